# METADATA
# title: Models are signed by an allowed identity before serving
# description: >-
#   Where thresholds[stage].require_signatures holds (serve), every top-level model must have a
#   verified signature over its sha256 from an identity and issuer in data.mlsec.allowed_signers
#   (identities are glob patterns). With no allowed signers configured, every model is denied.
# custom:
#   id: MLSEC-GATE-003
#   severity: critical
package mlsec.gates.models_signed_for_serving

import rego.v1

import data.mlsec.lib

settings := lib.settings(input.stage)

deny contains result if {
	settings.require_signatures
	some model in lib.models
	not lib.signed_by_allowed(model.sha256)
	result := {
		"msg": sprintf("model %s (sha256 %s…) has no verified signature from an allowed signer", [model.path, substring(model.sha256, 0, 12)]),
		"rule_id": "MLSEC-GATE-003",
		"artifact": model.sha256,
	}
}
