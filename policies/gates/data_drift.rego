# METADATA
# title: Training data has not drifted past the stage's threshold
# description: >-
#   Denies a drift score (metrics.drift_score of an evaluation, or facts.drift_score of a dataset
#   finding) above thresholds[stage].max_drift.
# custom:
#   id: MLSEC-GATE-006
#   severity: medium
package mlsec.gates.data_drift

import rego.v1

import data.mlsec.lib

settings := lib.settings(input.stage)

drift contains {"what": evaluation.name, "score": evaluation.metrics.drift_score, "artifact": evaluation.artifact_sha256} if {
	some evaluation in input.evaluations
	is_number(evaluation.metrics.drift_score)
}

drift contains {"what": lib.where(finding.location), "score": finding.evidence.facts.drift_score, "artifact": finding.artifact_sha256} if {
	some finding in input.report.findings
	is_number(finding.evidence.facts.drift_score)
}

deny contains result if {
	some item in drift
	item.score > settings.max_drift
	result := {
		"msg": sprintf("%s: drift score %v is above %v", [item.what, item.score, settings.max_drift]),
		"rule_id": "MLSEC-GATE-006",
		"artifact": item.artifact,
	}
}
