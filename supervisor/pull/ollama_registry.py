"""Ollama's registry, read the way the ``ollama`` CLI reads it.

Owns where the registry is (``--registry``, else env ``CORRAL_OLLAMA_REGISTRY``, else
``https://registry.ollama.ai``; a name with its own host uses that host), the manifest
request and its layers, the blob URL of a layer, the small layers that carry defaults
(``params`` as request parameters, ``system`` as the system prompt) and the OCI listing that
``corral search`` reads where a registry offers it. It downloads no model (see ``library``).

From Ollama's code (server/images.go ``pullModelManifest``, server/download.go
``downloadBlob``, types/model/name.go): ``GET {base}/v2/{namespace}/{model}/manifests/{tag}``
with ``Accept: application/vnd.docker.distribution.manifest.v2+json``, and
``GET {base}/v2/{namespace}/{model}/blobs/{digest}`` (a redirect to a CDN follows); a 404 is
a missing model or tag.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import httpx

from corral.generator import ollama_options
from corral.generator.model_source import OllamaName
from corral.supervisor.pull.sources import check_url

DEFAULT_REGISTRY = "https://registry.ollama.ai"
REGISTRY_ENV = "CORRAL_OLLAMA_REGISTRY"
MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"
MODEL = "application/vnd.ollama.image.model"
PARAMS = "application/vnd.ollama.image.params"
SYSTEM = "application/vnd.ollama.image.system"
TEMPLATE = "application/vnd.ollama.image.template"
PROJECTOR = "application/vnd.ollama.image.projector"
# Metadata is small: a registry that takes longer than this to answer is not answering.
TIMEOUT = httpx.Timeout(30.0)


class RegistryError(Exception):
    """The registry said no, or said something that is not a manifest; names the URL."""


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str
    size: int

    @property
    def sha256(self) -> str:
        return self.digest.removeprefix("sha256:")


@dataclass(frozen=True)
class Manifest:
    """A model's manifest at one registry: its layers, and where its blobs are."""

    base: str
    name: OllamaName
    layers: tuple[Layer, ...]

    def blob_url(self, layer: Layer) -> str:
        return f"{self.base}/v2/{self.name.path}/blobs/{layer.digest}"

    def first(self, media_type: str) -> Layer | None:
        return next((layer for layer in self.layers if layer.media_type == media_type), None)


def base_url(name: OllamaName, registry: str | None = None) -> str:
    """The registry to ask for ``name``; http only on loopback (a test's fake registry)."""
    if name.host is not None:
        base = f"https://{name.host}"
    else:
        base = (registry or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY).rstrip("/")
    check_url(base)
    return base


def fetch_manifest(name: OllamaName, registry: str | None = None) -> Manifest:
    base = base_url(name, registry)
    url = f"{base}/v2/{name.path}/manifests/{name.tag}"
    display = f"{name.path}:{name.tag}"
    response = _get(url, {"Accept": MANIFEST_ACCEPT})
    if response.status_code == 404:
        raise RegistryError(
            f"{display}: not in the registry at {base} ({url}: HTTP 404); "
            f"check the name and tag, e.g. `corral search {name.model}`"
        )
    if response.status_code != 200:
        raise RegistryError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
    try:
        data = response.json()
        layers = tuple(
            Layer(str(layer["mediaType"]), str(layer["digest"]), int(layer["size"]))
            for layer in data["layers"]
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"{url}: not a manifest ({exc!r})") from None
    for layer in layers:
        if not layer.digest.startswith("sha256:") or len(layer.sha256) != 64:
            raise RegistryError(f"{url}: layer digest {layer.digest!r} is not sha256:<64 hex>")
    return Manifest(base, name, layers)


def defaults(manifest: Manifest) -> dict[str, Any]:
    """The params and system layers as corral's ``parameters`` and ``system_prompt``."""
    found: dict[str, Any] = {}
    params = manifest.first(PARAMS)
    if params is not None:
        raw = _small_blob(manifest, params)
        try:
            options = json.loads(raw)
        except ValueError:
            raise RegistryError(f"{manifest.blob_url(params)}: params layer is not JSON") from None
        if isinstance(options, dict):
            found["parameters"] = to_parameters(options)
    system = manifest.first(SYSTEM)
    if system is not None:
        found["system_prompt"] = _small_blob(manifest, system)
    return found


def to_parameters(options: dict[str, Any]) -> dict[str, Any]:
    """Ollama's options as request defaults, as its API maps a request's ``options``
    (``ollama_options``): ``num_predict`` -> ``max_tokens``; server-side ones (``num_ctx``)
    are left out, since corral sets those in the model's own keys."""
    return ollama_options.to_parameters(options)


def catalog(registry: str | None = None) -> tuple[str, list[str]]:
    """(base, repositories) from the OCI ``/v2/_catalog`` listing; RegistryError if none."""
    base = (registry or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY).rstrip("/")
    check_url(base)
    url = f"{base}/v2/_catalog"
    response = _get(url, {})
    if response.status_code != 200:
        raise RegistryError(
            f"the registry at {base} offers no listing ({url}: HTTP {response.status_code}); "
            "corral cannot search it. Ollama's library is browsable at https://ollama.com/search"
        )
    try:
        return base, [str(r) for r in response.json()["repositories"]]
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"{url}: not a catalog listing") from None


def tags(base: str, repository: str) -> list[str]:
    """The tags of one repository (``/v2/<repo>/tags/list``); empty when it lists none."""
    response = _get(f"{base}/v2/{repository}/tags/list", {})
    if response.status_code != 200:
        return []
    try:
        return [str(t) for t in response.json().get("tags") or []]
    except (ValueError, AttributeError):
        return []


def _small_blob(manifest: Manifest, layer: Layer) -> str:
    url = manifest.blob_url(layer)
    response = _get(url, {})
    if response.status_code != 200:
        raise RegistryError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
    return response.text


def _get(url: str, headers: dict[str, str]) -> httpx.Response:
    try:
        return httpx.get(url, headers=headers, timeout=TIMEOUT, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise RegistryError(
            f"{url}: cannot reach the registry: {exc or type(exc).__name__}"
        ) from None
