# METADATA
# title: Robust accuracy and backdoor thresholds, when evaluations are present
# description: >-
#   For each evaluation in the input: robust_accuracy below thresholds[stage].min_robust_accuracy
#   denies, backdoor_success_rate above thresholds[stage].max_backdoor_success_rate denies, a Neural
#   Cleanse anomaly_index above thresholds[stage].max_anomaly_index denies when its trigger_norm_ratio
#   (where reported) is under thresholds[stage].max_trigger_norm_ratio, and an evaluation that did not
#   complete denies where coverage is required (warns elsewhere).
# custom:
#   id: MLSEC-GATE-005
#   severity: high
package mlsec.gates.robustness_threshold

import rego.v1

import data.mlsec.lib

settings := lib.settings(input.stage)

deny contains result if {
	some evaluation in input.evaluations
	accuracy := evaluation.metrics.robust_accuracy
	accuracy < settings.min_robust_accuracy
	result := {
		"msg": sprintf("%s: robust accuracy %v is below %v", [evaluation.name, accuracy, settings.min_robust_accuracy]),
		"rule_id": "MLSEC-GATE-005",
		"artifact": evaluation.artifact_sha256,
	}
}

deny contains result if {
	some evaluation in input.evaluations
	rate := evaluation.metrics.backdoor_success_rate
	rate > settings.max_backdoor_success_rate
	result := {
		"msg": sprintf("%s: backdoor success rate %v is above %v", [evaluation.name, rate, settings.max_backdoor_success_rate]),
		"rule_id": "MLSEC-GATE-005",
		"artifact": evaluation.artifact_sha256,
	}
}

deny contains result if {
	some evaluation in input.evaluations
	index := evaluation.metrics.anomaly_index
	index > settings.max_anomaly_index
	ratio := object.get(evaluation.metrics, "trigger_norm_ratio", 0)
	ratio < settings.max_trigger_norm_ratio
	result := {
		"msg": sprintf("%s: anomaly index %v is above %v, trigger norm %v of the median (class %v)", [evaluation.name, index, settings.max_anomaly_index, ratio, evaluation.metrics.suspect_class]),
		"rule_id": "MLSEC-GATE-005",
		"artifact": evaluation.artifact_sha256,
	}
}

unfinished contains result if {
	some evaluation in input.evaluations
	evaluation.status != "completed"
	result := {
		"msg": sprintf("%s did not complete (%s)", [evaluation.name, evaluation.status]),
		"rule_id": "MLSEC-GATE-005",
		"artifact": evaluation.artifact_sha256,
	}
}

deny contains result if {
	settings.require_complete_coverage
	some result in unfinished
}

warn contains result if {
	not settings.require_complete_coverage
	some result in unfinished
}
