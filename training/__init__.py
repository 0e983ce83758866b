"""GPU side: data, models, train / distil / qat / evaluate (python -m training.X). Depends on sdk, never the reverse."""
import logging as _logging
import warnings as _warnings

# Quiet logs: third-party deprecation chatter that says nothing to a user of this project, printed by every process
# (DataLoader workers included) that imports torchao / torch.export. Set here, before any of them is imported.
_logging.getLogger("torch.utils._pytree").setLevel(_logging.ERROR)  # torchao's Enum register_constant notice
_logging.getLogger("torchao").setLevel(_logging.ERROR)  # "Failed to load" its CUDA-only kernels on a CPU machine
_warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)
