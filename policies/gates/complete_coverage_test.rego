package mlsec.gates.complete_coverage_test

import rego.v1

import data.mlsec.gates.complete_coverage

report := {"errors": [{"path": "a.onnx", "reason": "truncated"}], "skipped": [{"path": "b.engine", "reason": "TensorRT"}]}

test_errors_and_skipped_deny_at_serve if {
	count(complete_coverage.deny) == 2 with input as {"stage": "serve", "report": report}
}

test_errors_and_skipped_only_warn_at_pr if {
	count(complete_coverage.deny) == 0 with input as {"stage": "pr", "report": report}
	count(complete_coverage.warn) == 2 with input as {"stage": "pr", "report": report}
}

test_complete_scan_passes_at_serve if {
	count(complete_coverage.deny) == 0 with input as {"stage": "serve", "report": {"errors": [], "skipped": []}}
}
