"""Providers: which implementation serves a capability (local or a cloud service).

A capability (``transcribe``, ``summarize``, ``denoise``, ``tts``, ...) is served by the offline
``local`` provider unless the cloud provider's key is configured, or ``CONVEYOR_PROVIDER_<CAPABILITY>``
names a provider explicitly (e.g. ``CONVEYOR_PROVIDER_TRANSCRIBE=pocketsphinx``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from actors.errors import InvalidInput, PermanentError
from conveyor.config import settings

T = TypeVar("T")

#: The name of the offline provider every capability has.
LOCAL = "local"
OPENAI_TIMEOUT = 300.0  #: s for one OpenAI request


def cloud_name(key_name: str) -> str:
    """The provider named by a credential: ``openai_api_key`` -> ``openai``, ``replicate_api_token`` -> ``replicate``."""
    for suffix in ("_api_key", "_api_token", "_key", "_token"):
        if key_name.endswith(suffix):
            return key_name[: -len(suffix)]
    return key_name


def choose(capability: str, default_cloud_key_name: str | None = None, *, cloud: str | None = None) -> str:
    """The provider name for ``capability``.

    Parameters:
      capability: e.g. ``"transcribe"``; ``CONVEYOR_PROVIDER_TRANSCRIBE`` overrides the choice.
      default_cloud_key_name: the secret whose presence selects the cloud provider (``"openai_api_key"``).
      cloud: that cloud provider's name, when it differs from the key's prefix.

    Returns:
      the override when set, else the cloud provider when its key is set, else ``"local"``.
    """
    config = settings()
    override = config.provider.get(capability.lower())
    if override:
        return override
    if default_cloud_key_name and config.secret(default_cloud_key_name):
        return cloud or cloud_name(default_cloud_key_name)
    return LOCAL


def pick(capability: str, providers: Mapping[str, T], default_cloud_key_name: str | None = None,
         *, cloud: str | None = None) -> T:
    """The implementation among ``providers`` (name -> implementation) that :func:`choose` names.

    Raises:
      InvalidInput: when the configured name is not one of ``providers``.
    """
    name = choose(capability, default_cloud_key_name, cloud=cloud)
    try:
        return providers[name]
    except KeyError:
        known = ", ".join(sorted(providers))
        raise InvalidInput(f"unknown {capability} provider {name!r}; use one of: {known}") from None


def openai_client(*, keyless: bool = False) -> Any:
    """An ``openai.OpenAI`` client from configuration (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``).

    The SDK does not retry (``max_retries=0``): the engine retries with its own policy. ``keyless``
    allows no key, for a self-hosted OpenAI-compatible server (llama.cpp, vLLM, Ollama) that needs none.

    Raises:
      PermanentError: when no OpenAI key is configured (and ``keyless`` is false).
    """
    import openai

    config = settings()
    key = config.secret("openai_api_key") or ("no-key" if keyless else None)
    if not key:
        raise PermanentError("the OpenAI provider needs OPENAI_API_KEY", code="provider_auth")
    return openai.OpenAI(api_key=key, base_url=config.base_url("OPENAI_BASE_URL"), max_retries=0,
                         timeout=OPENAI_TIMEOUT)
