"""Builds one tiny imported model directory per family (tiny_checkpoints.py's random checkpoints,
shaped for decoding, imported in float32) for the TypeScript tests that serve imported models:
models/src/imported.test.ts and test/imported.test.ts.

    .venv/bin/python models/python/tests/build_tiny_models.py --out DIR

writes DIR/tiny-sdar, DIR/tiny-fast-dllm and DIR/tiny-bd3lm (manifest names the same)."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_checkpoints import MASK, make_checkpoint  # noqa: E402

from import_checkpoint import import_checkpoint  # noqa: E402

SHARPNESS = 5  # as test_runtime_matches_reference.py: thresholds let several tokens through
NAMES = {"sdar": "tiny-sdar", "Fast_dLLM_Qwen": "tiny-fast-dllm", "a2d-qwen3": "tiny-bd3lm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    out = parser.parse_args().out
    for family, name in NAMES.items():
        hf = out / f"{name}-hf"
        make_checkpoint(hf, family, sharpness=SHARPNESS)
        mask_id = MASK if family == "Fast_dLLM_Qwen" else None  # its mask id is past this vocabulary
        import_checkpoint(hf, out / name, name=name, dtype="float32", mask_id=mask_id)


if __name__ == "__main__":
    main()
