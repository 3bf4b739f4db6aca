# METADATA
# title: No known-vulnerable dependency at or above the stage's CVSS bar
# description: >-
#   Denies every finding whose evidence carries a CVSS base score (facts.cvss) at or above
#   thresholds[stage].block_cvss. The dependency scanner sets facts.cvss on vulnerability findings.
# custom:
#   id: MLSEC-GATE-004
#   severity: high
package mlsec.gates.dependencies_without_known_vulns

import rego.v1

import data.mlsec.lib

settings := lib.settings(input.stage)

deny contains result if {
	some finding in input.report.findings
	cvss := finding.evidence.facts.cvss
	is_number(cvss)
	cvss >= settings.block_cvss
	result := {
		"msg": sprintf("%s in %s: CVSS %v is at or above %v: %s", [finding.rule_id, lib.where(finding.location), cvss, settings.block_cvss, finding.message]),
		"rule_id": finding.rule_id,
		"artifact": finding.artifact_sha256,
	}
}
