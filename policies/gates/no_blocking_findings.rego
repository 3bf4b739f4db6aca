# METADATA
# title: No findings at or above the stage's blocking severity
# description: >-
#   Denies every finding whose severity reaches thresholds[stage].block_severity
#   (high for pull requests and training, medium from registration on).
# custom:
#   id: MLSEC-GATE-001
#   severity: high
package mlsec.gates.no_blocking_findings

import rego.v1

import data.mlsec.lib

settings := lib.settings(input.stage)

bar := lib.severity_rank[settings.block_severity]

deny contains result if {
	some finding in input.report.findings
	lib.severity_rank[finding.severity] >= bar
	result := {
		"msg": sprintf("%s %s in %s: %s", [upper(finding.severity), finding.rule_id, lib.where(finding.location), finding.message]),
		"rule_id": finding.rule_id,
		"artifact": finding.artifact_sha256,
	}
}

warn contains result if {
	some finding in input.report.findings
	lib.severity_rank[finding.severity] < bar
	lib.severity_rank[finding.severity] >= lib.severity_rank.medium
	result := {
		"msg": sprintf("%s %s in %s (below this stage's bar): %s", [upper(finding.severity), finding.rule_id, lib.where(finding.location), finding.message]),
		"rule_id": finding.rule_id,
		"artifact": finding.artifact_sha256,
	}
}
