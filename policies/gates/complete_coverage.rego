# METADATA
# title: Everything was scanned
# description: >-
#   Where thresholds[stage].require_complete_coverage holds (register and serve), any scan error
#   or skipped file denies: what was not read cannot be shipped. Elsewhere they are warnings.
# custom:
#   id: MLSEC-GATE-002
#   severity: high
package mlsec.gates.complete_coverage

import rego.v1

import data.mlsec.lib

settings := lib.settings(input.stage)

gaps contains gap if {
	some error in input.report.errors
	gap := {"msg": sprintf("scan error in %s: %s", [error.path, error.reason]), "artifact": error.path}
}

gaps contains gap if {
	some skipped in input.report.skipped
	gap := {"msg": sprintf("not scanned: %s (%s)", [skipped.path, skipped.reason]), "artifact": skipped.path}
}

deny contains gap if {
	settings.require_complete_coverage
	some gap in gaps
}

warn contains gap if {
	not settings.require_complete_coverage
	some gap in gaps
}
