"""The sentinel guard is only proof if the payloads work: load some, on purpose, in a throw-away child."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import fixture

LOADERS = {
    "models/malicious/os_system_protocol2.pkl": "import pickle,sys; pickle.load(open(sys.argv[1],'rb'))",
    "models/malicious/memoized_stack_global.pkl": "import pickle,sys; pickle.load(open(sys.argv[1],'rb'))",
    "models/malicious/py2_builtin_eval.pkl": "import pickle,sys; pickle.load(open(sys.argv[1],'rb'))",
    "models/malicious/payload_zlib.joblib": "import joblib,sys; joblib.load(sys.argv[1])",
    "models/malicious/object_array.npy": "import numpy,sys; numpy.load(sys.argv[1], allow_pickle=True)",
    # a llama.cpp server that renders the chat template without a sandbox (CVE-2024-34359)
    "models/malicious/gguf_chat_template_ssti.gguf": (
        "import gguf,jinja2,sys; f=gguf.GGUFReader(sys.argv[1]).fields['tokenizer.chat_template'];"
        "jinja2.Template(bytes(f.parts[f.data[0]]).decode()).render(messages=[])"
    ),
    # Keras 3 with safe_mode off (as tutorials tell users to do for Lambda layers), and legacy HDF5
    "models/malicious/keras_lambda.keras": (
        "import os; os.environ['KERAS_BACKEND']='torch'; import keras,sys; keras.saving.load_model(sys.argv[1], safe_mode=False)"
    ),
    "models/malicious/keras_lambda.h5": (
        "import os; os.environ['KERAS_BACKEND']='torch'; import keras,sys; keras.saving.load_model(sys.argv[1], safe_mode=False)"
    ),
    # a tool that trusts the metadata it finds in a safetensors header
    "models/malicious/safetensors_metadata_pickle.safetensors": (
        "import base64,json,pickle,sys; d=open(sys.argv[1],'rb').read(); n=int.from_bytes(d[:8],'little');"
        "pickle.loads(base64.b64decode(json.loads(d[8:8+n])['__metadata__']['config']))"
    ),
}


@pytest.mark.parametrize("rel", sorted(LOADERS))
def test_loading_the_fixture_would_run_its_payload(rel: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    env = {**os.environ, "MLSEC_SENTINEL": str(marker)}
    subprocess.run([sys.executable, "-c", LOADERS[rel], fixture(rel)], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert marker.exists(), f"{rel} did not run its payload when loaded: the sentinel guard would prove nothing"
