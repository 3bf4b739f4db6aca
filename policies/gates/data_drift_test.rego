package mlsec.gates.data_drift_test

import rego.v1

import data.mlsec.gates.data_drift

test_drifted_evaluation_denies if {
	e := {"name": "psi", "status": "completed", "artifact_sha256": "ee", "metrics": {"drift_score": 0.9}}
	count(data_drift.deny) == 1 with input as {"stage": "train", "evaluations": [e], "report": {"findings": []}}
}

test_drift_from_a_dataset_finding_denies if {
	f := {"location": {"path": "train.csv", "member": null}, "evidence": {"facts": {"drift_score": 0.8}}, "artifact_sha256": "ff"}
	count(data_drift.deny) == 1 with input as {"stage": "train", "evaluations": [], "report": {"findings": [f]}}
}

test_small_drift_passes if {
	e := {"name": "psi", "status": "completed", "artifact_sha256": "ee", "metrics": {"drift_score": 0.05}}
	count(data_drift.deny) == 0 with input as {"stage": "serve", "evaluations": [e], "report": {"findings": []}}
}
