"""GPU side: data, models, train / distil / qat / evaluate (python -m training.X). Depends on sdk, never the reverse."""
from training.logs import hide_known_chatter as _hide_known_chatter, verbose_requested as _verbose_requested

# Before any module of this package can import torchao or torch.export, in every process that imports it (DataLoader
# and generator workers included): training/logs.py lists the messages and why they are harmless.
if not _verbose_requested():
    _hide_known_chatter()
