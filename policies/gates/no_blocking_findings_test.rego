package mlsec.gates.no_blocking_findings_test

import rego.v1

import data.mlsec.gates.no_blocking_findings

finding(severity) := {
	"rule_id": "MLSEC-PICKLE-001",
	"severity": severity,
	"message": "m",
	"location": {"path": "model.pkl", "member": null},
	"artifact_sha256": "aa",
}

test_critical_finding_denies_at_pr if {
	count(no_blocking_findings.deny) == 1 with input as {"stage": "pr", "report": {"findings": [finding("critical")]}}
}

test_deny_names_rule_and_artifact if {
	some result in no_blocking_findings.deny with input as {"stage": "pr", "report": {"findings": [finding("high")]}}
	result.rule_id == "MLSEC-PICKLE-001"
	result.artifact == "aa"
	contains(result.msg, "model.pkl")
}

test_medium_warns_at_pr if {
	inp := {"stage": "pr", "report": {"findings": [finding("medium")]}}
	count(no_blocking_findings.deny) == 0 with input as inp
	count(no_blocking_findings.warn) == 1 with input as inp
}

test_medium_denies_at_serve if {
	count(no_blocking_findings.deny) == 1 with input as {"stage": "serve", "report": {"findings": [finding("medium")]}}
}

test_low_passes_everywhere if {
	every stage in ["pr", "train", "register", "serve"] {
		count(no_blocking_findings.deny) == 0 with input as {"stage": stage, "report": {"findings": [finding("low")]}}
	}
}

test_a_file_without_member_is_named_plainly if {
	some result in no_blocking_findings.deny with input as {"stage": "pr", "report": {"findings": [finding("critical")]}}
	endswith(result.msg, "model.pkl: m")
}

test_member_is_named if {
	f := object.union(finding("critical"), {"location": {"path": "m.zip", "member": "a.pkl"}})
	some result in no_blocking_findings.deny with input as {"stage": "pr", "report": {"findings": [f]}}
	contains(result.msg, "m.zip [a.pkl]")
}
