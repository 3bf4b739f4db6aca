# METADATA
# title: mlsec policy helpers
# description: >-
#   Severity ranks, per-stage settings from data.mlsec.thresholds, and artifact helpers.
#   Performance note (regorus): bind settings once per gate (`settings := lib.settings(input.stage)`)
#   and compare ranks through the severity_rank rule; a helper function called once per finding
#   costs ten times more over large reports.
package mlsec.lib

import rego.v1

severity_rank := {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}

# settings(stage): data.mlsec.thresholds.default with the stage's own values over it
settings(stage) := object.union(data.mlsec.thresholds["default"], object.get(data.mlsec.thresholds, stage, {}))

# where(location): "path" or "path [member]"
where(location) := sprintf("%s [%s]", [location.path, location.member]) if {
	is_string(location.member)
} else := location.path

# the files a report scanned that are, or contain, a model: a compressed joblib or a zip of
# pickles counts through its members (members share their container's path)
models contains artifact if {
	some artifact in input.report.artifacts
	artifact.member == null
	some inner in input.report.artifacts
	inner.path == artifact.path
	inner.kind == "model"
}

# a verified signature over sha256 from an identity and issuer in data.mlsec.allowed_signers (glob identities)
signed_by_allowed(sha256) if {
	some signature in input.signatures
	signature.sha256 == sha256
	signature.verified == true
	some signer in data.mlsec.allowed_signers
	signature.issuer == signer.issuer
	glob.match(signer.identity, [], signature.identity)
}
