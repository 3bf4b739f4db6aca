package mlsec.gates.robustness_threshold_test

import rego.v1

import data.mlsec.gates.robustness_threshold

evaluation(metrics, status) := {"name": "fgsm", "status": status, "artifact_sha256": "dd", "metrics": metrics}

test_low_robust_accuracy_denies if {
	count(robustness_threshold.deny) == 1 with input as {"stage": "serve", "evaluations": [evaluation({"robust_accuracy": 0.1}, "completed")]}
}

test_good_robust_accuracy_passes if {
	count(robustness_threshold.deny) == 0 with input as {"stage": "serve", "evaluations": [evaluation({"robust_accuracy": 0.9}, "completed")]}
}

test_backdoor_success_denies if {
	count(robustness_threshold.deny) == 1 with input as {"stage": "register", "evaluations": [evaluation({"backdoor_success_rate": 0.9}, "completed")]}
}

test_backdoor_anomaly_index_denies if {
	flagged := evaluation({"anomaly_index": 4.4, "suspect_class": 0}, "completed")
	count(robustness_threshold.deny) == 1 with input as {"stage": "register", "evaluations": [flagged]}
	clean := evaluation({"anomaly_index": 1.2, "suspect_class": 9}, "completed")
	count(robustness_threshold.deny) == 0 with input as {"stage": "register", "evaluations": [clean]}
}

test_an_anomaly_index_from_a_collapsed_spread_passes if {
	# a clean model whose classes cluster: a high index, but its smallest trigger is near the median
	clustered := evaluation({"anomaly_index": 6.6, "trigger_norm_ratio": 0.85, "suspect_class": 3}, "completed")
	count(robustness_threshold.deny) == 0 with input as {"stage": "register", "evaluations": [clustered]}
	backdoored := evaluation({"anomaly_index": 6.6, "trigger_norm_ratio": 0.46, "suspect_class": 0}, "completed")
	count(robustness_threshold.deny) == 1 with input as {"stage": "register", "evaluations": [backdoored]}
}

test_no_evaluations_no_decision if {
	count(robustness_threshold.deny) == 0 with input as {"stage": "serve", "evaluations": []}
}

test_unfinished_denies_at_serve_warns_at_pr if {
	e := evaluation({}, "timed_out")
	count(robustness_threshold.deny) == 1 with input as {"stage": "serve", "evaluations": [e]}
	count(robustness_threshold.deny) == 0 with input as {"stage": "pr", "evaluations": [e]}
	count(robustness_threshold.warn) == 1 with input as {"stage": "pr", "evaluations": [e]}
}
