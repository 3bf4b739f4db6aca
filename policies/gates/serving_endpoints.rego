# METADATA
# title: Serving endpoints resist model extraction and inversion
# description: >-
#   Where thresholds[stage].require_serving_controls holds (serve), every serving resource the
#   report found (KServe, Seldon, Deployments; input.serving) must serve only model URIs this report
#   scanned and an allowed signer signed, run only images this report scanned, and limit what an
#   attacker can query: authentication, rate limiting and resource limits, and no full probability
#   vectors from a public endpoint (they make extraction and membership inference cheap). An
#   endpoint that is not public only warns on authentication and rate limits.
# custom:
#   id: MLSEC-GATE-007
#   severity: high
package mlsec.gates.serving_endpoints

import rego.v1

import data.mlsec.lib

settings := lib.settings(input.stage)

problems contains result if {
	some endpoint in input.serving
	some model in endpoint.model_uris
	not model.scanned
	result := reason(endpoint, sprintf("serves %s, which this report did not scan", [model.uri]), model.uri)
}

problems contains result if {
	some endpoint in input.serving
	some model in endpoint.model_uris
	model.scanned
	every sha256 in model.sha256 {
		not lib.signed_by_allowed(sha256)
	}
	result := reason(endpoint, sprintf("serves %s, which has no verified signature from an allowed signer", [model.uri]), model.uri)
}

problems contains result if {
	some endpoint in input.serving
	some image in endpoint.images
	not image.scanned
	result := reason(endpoint, sprintf("runs image %s, which this report did not scan", [image.image]), image.image)
}

problems contains result if {
	some endpoint in input.serving
	endpoint.public
	not endpoint.authentication
	result := reason(endpoint, "is public and has no authentication", endpoint.resource)
}

problems contains result if {
	some endpoint in input.serving
	endpoint.public
	not endpoint.rate_limited
	result := reason(endpoint, "is public and has no rate limit", endpoint.resource)
}

problems contains result if {
	some endpoint in input.serving
	endpoint.public
	endpoint.outputs == "probabilities"
	result := reason(endpoint, "returns full probability vectors from a public endpoint (return labels, or top-k rounded scores)", endpoint.resource)
}

problems contains result if {
	some endpoint in input.serving
	not endpoint.resource_limits
	result := reason(endpoint, "sets no CPU and memory limits on its containers", endpoint.resource)
}

reason(endpoint, what, artifact) := {
	"msg": sprintf("%s %s (%s) %s", [endpoint.kind, endpoint.name, endpoint.manifest, what]),
	"rule_id": "MLSEC-GATE-007",
	"artifact": artifact,
}

deny contains result if {
	settings.require_serving_controls
	some result in problems
}

warn contains result if {
	not settings.require_serving_controls
	some result in problems
}

warn contains result if {
	settings.require_serving_controls
	some endpoint in input.serving
	not endpoint.public
	not endpoint.authentication
	result := reason(endpoint, "has no authentication (cluster-local, so a warning)", endpoint.resource)
}
