package mlsec.gates.serving_endpoints_test

import rego.v1

import data.mlsec.gates.serving_endpoints

signers := [{"identity": "*@release.example.com", "issuer": "https://token.actions.githubusercontent.com"}]

signed := [{
	"file": "model.onnx", "sha256": "ab12", "verified": true,
	"identity": "ci@release.example.com", "issuer": "https://token.actions.githubusercontent.com",
}]

endpoint(overrides) := object.union(
	{
		"resource": "InferenceService/prod/fraud", "manifest": "deploy/kserve.yaml", "kind": "InferenceService",
		"name": "fraud", "namespace": "prod", "public": true, "authentication": true, "rate_limited": true,
		"resource_limits": true, "replicas": 2, "outputs": "labels",
		"model_uris": [{"uri": "s3://models/fraud/v3", "scanned": true, "sha256": ["ab12"]}],
		"images": [{"image": "acme/server:1.0", "scanned": true}],
	},
	overrides,
)

messages(overrides, signatures) := msgs if {
	inp := {"stage": "serve", "serving": [endpoint(overrides)], "signatures": signatures}
	msgs := {r.msg | some r in serving_endpoints.deny} with input as inp with data.mlsec.allowed_signers as signers
}

test_a_hardened_endpoint_serving_a_signed_scanned_model_passes if {
	count(messages({}, signed)) == 0
}

test_no_authentication_and_an_unsigned_model_give_both_reasons if {
	msgs := messages({"authentication": false}, [])
	msgs == {
		"InferenceService fraud (deploy/kserve.yaml) is public and has no authentication",
		"InferenceService fraud (deploy/kserve.yaml) serves s3://models/fraud/v3, which has no verified signature from an allowed signer",
	}
}

test_a_model_uri_the_report_did_not_scan_is_denied if {
	msgs := messages({"model_uris": [{"uri": "s3://other/model", "scanned": false, "sha256": []}]}, signed)
	msgs == {"InferenceService fraud (deploy/kserve.yaml) serves s3://other/model, which this report did not scan"}
}

test_an_image_the_report_did_not_scan_is_denied if {
	msgs := messages({"images": [{"image": "acme/server:2.0", "scanned": false}]}, signed)
	msgs == {"InferenceService fraud (deploy/kserve.yaml) runs image acme/server:2.0, which this report did not scan"}
}

test_probabilities_from_a_public_endpoint_are_denied if {
	some msg in messages({"outputs": "probabilities"}, signed)
	contains(msg, "returns full probability vectors from a public endpoint")
}

test_probabilities_inside_the_cluster_are_allowed if {
	count(messages({"outputs": "probabilities", "public": false}, signed)) == 0
}

test_no_rate_limit_and_no_resource_limits_are_denied if {
	msgs := messages({"rate_limited": false, "resource_limits": false}, signed)
	msgs == {
		"InferenceService fraud (deploy/kserve.yaml) is public and has no rate limit",
		"InferenceService fraud (deploy/kserve.yaml) sets no CPU and memory limits on its containers",
	}
}

test_a_cluster_local_endpoint_without_authentication_only_warns if {
	inp := {"stage": "serve", "serving": [endpoint({"public": false, "authentication": false})], "signatures": signed}
	count(serving_endpoints.deny) == 0 with input as inp with data.mlsec.allowed_signers as signers
	count(serving_endpoints.warn) == 1 with input as inp with data.mlsec.allowed_signers as signers
}

test_before_serve_the_same_problems_only_warn if {
	inp := {"stage": "pr", "serving": [endpoint({"authentication": false})], "signatures": []}
	count(serving_endpoints.deny) == 0 with input as inp with data.mlsec.allowed_signers as signers
	count(serving_endpoints.warn) == 2 with input as inp with data.mlsec.allowed_signers as signers
}
