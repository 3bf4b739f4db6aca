package mlsec.gates.dependencies_without_known_vulns_test

import rego.v1

import data.mlsec.gates.dependencies_without_known_vulns

vuln(cvss) := {
	"rule_id": "MLSEC-DEP-001",
	"severity": "high",
	"message": "pillow 9.0.0: GHSA-xxxx",
	"location": {"path": "requirements.txt", "member": null},
	"evidence": {"facts": {"cvss": cvss}},
	"artifact_sha256": "cc",
}

test_high_cvss_denies if {
	count(dependencies_without_known_vulns.deny) == 1 with input as {"stage": "serve", "report": {"findings": [vuln(9.8)]}}
}

test_cvss_below_the_bar_passes if {
	count(dependencies_without_known_vulns.deny) == 0 with input as {"stage": "pr", "report": {"findings": [vuln(5.3)]}}
}

test_bar_is_per_stage if {
	count(dependencies_without_known_vulns.deny) == 1 with input as {"stage": "serve", "report": {"findings": [vuln(7.5)]}}
	count(dependencies_without_known_vulns.deny) == 0 with input as {"stage": "pr", "report": {"findings": [vuln(7.5)]}}
}

test_findings_without_cvss_are_not_this_gates_business if {
	f := object.union(vuln(1), {"evidence": {"facts": {}}})
	count(dependencies_without_known_vulns.deny) == 0 with input as {"stage": "serve", "report": {"findings": [f]}}
}
