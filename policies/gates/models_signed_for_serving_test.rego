package mlsec.gates.models_signed_for_serving_test

import rego.v1

import data.mlsec.gates.models_signed_for_serving

model := {"path": "model.onnx", "member": null, "kind": "model", "sha256": "ab12ab12ab12ab12"}

signers := [{"identity": "*@release.example.com", "issuer": "https://token.actions.githubusercontent.com"}]

signature(identity, verified) := {
	"file": "model.onnx",
	"sha256": "ab12ab12ab12ab12",
	"verified": verified,
	"identity": identity,
	"issuer": "https://token.actions.githubusercontent.com",
}

test_unsigned_model_denied_at_serve if {
	count(models_signed_for_serving.deny) == 1 with input as {"stage": "serve", "report": {"artifacts": [model]}, "signatures": []}
		with data.mlsec.allowed_signers as signers
}

test_allowed_verified_signature_passes if {
	inp := {"stage": "serve", "report": {"artifacts": [model]}, "signatures": [signature("ci@release.example.com", true)]}
	count(models_signed_for_serving.deny) == 0 with input as inp with data.mlsec.allowed_signers as signers
}

test_unverified_signature_denied if {
	inp := {"stage": "serve", "report": {"artifacts": [model]}, "signatures": [signature("ci@release.example.com", false)]}
	count(models_signed_for_serving.deny) == 1 with input as inp with data.mlsec.allowed_signers as signers
}

test_other_identity_denied if {
	inp := {"stage": "serve", "report": {"artifacts": [model]}, "signatures": [signature("someone@evil.example", true)]}
	count(models_signed_for_serving.deny) == 1 with input as inp with data.mlsec.allowed_signers as signers
}

test_signatures_not_required_at_pr if {
	count(models_signed_for_serving.deny) == 0 with input as {"stage": "pr", "report": {"artifacts": [model]}, "signatures": []}
}

test_an_archive_holding_a_model_must_be_signed_itself if {
	archive := {"path": "model.joblib", "member": null, "kind": "archive", "sha256": "ff00ff00ff00"}
	inner := {"path": "model.joblib", "member": "model.joblib.pkl", "kind": "model", "sha256": "0a0a0a0a0a0a"}
	some result in models_signed_for_serving.deny with input as {"stage": "serve", "report": {"artifacts": [archive, inner]}, "signatures": []}
		with data.mlsec.allowed_signers as signers
	result.artifact == "ff00ff00ff00"
}

test_an_archive_of_data_only_needs_no_signature if {
	archive := {"path": "data.zip", "member": null, "kind": "archive", "sha256": "ff00ff00ff00"}
	inner := {"path": "data.zip", "member": "a.csv", "kind": "other", "sha256": "0a0a0a0a0a0a"}
	count(models_signed_for_serving.deny) == 0 with input as {"stage": "serve", "report": {"artifacts": [archive, inner]}, "signatures": []}
		with data.mlsec.allowed_signers as signers
}
