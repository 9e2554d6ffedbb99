"""What the third-generation fine-tune starts from: the shipped weights read back from their ONNX
graph, and function-level samples."""

from pathlib import Path

import torch

from functions import function_samples
from model import Denoiser, ModelConfig
from sample import empty_cache, onnx_forward, torch_forward
from weights import from_model_dir

SHIPPED = Path(__file__).resolve().parents[2] / "sprout-tiny"


def test_shipped_weights_read_from_the_graph_give_the_graphs_logits():
    state = from_model_dir(SHIPPED)
    model = Denoiser(ModelConfig(**state["config"]))
    model.load_state_dict(state["model"])
    arch = state["config"]
    cache = empty_cache(arch["n_layers"], arch["n_heads"], arch["d_model"] // arch["n_heads"])
    ids = [1, 100, 200, 300, 400, 3, 3, 3]
    expected, _, _ = onnx_forward(SHIPPED / "denoiser.onnx")(ids, *cache, causal=True)
    got, _, _ = torch_forward(model.eval())(ids, *cache, causal=True)
    torch.testing.assert_close(torch.as_tensor(got), torch.as_tensor(expected), atol=1e-4, rtol=1e-4)


def test_function_samples_carry_their_imports_and_class_header():
    module = (
        "import os\nimport re as regex\nfrom math import sqrt\n\n"
        "def norm(x, y):\n    '''Length.'''\n    return sqrt(x * x + y * y)\n\n"
        "class Files:\n    '''Doc.'''\n    def list(self, path):\n"
        "        names = os.listdir(path)\n        return sorted(names)\n\n"
        "def tiny():\n    pass\n"
    )
    samples = function_samples(module)
    assert samples == [
        "from math import sqrt\n\n\ndef norm(x, y):\n    '''Length.'''\n    return sqrt(x * x + y * y)\n",
        "import os\n\n\nclass Files:\n    def list(self, path):\n        names = os.listdir(path)\n"
        "        return sorted(names)\n",
    ], "needed imports only; the class header without its docstring; functions under 3 lines left out"
    assert function_samples("def broken(:\n") == []
