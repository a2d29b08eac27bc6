"""Which weights sit on the GPU: all of them (resident, the default) or only the stage's in use (low memory).

Resident is fastest: the models are moved once at load and never again. Low-memory mode keeps
every module in CPU memory and brings a module to the GPU just before it runs, sending the others
back, so the GPU holds one stage's weights at a time (as the reference's low-VRAM mode does).
Moving costs host-device copies, not results: the same module computes the same output wherever
it waited.
"""

import torch
from torch import nn

from model_core.checkpoints import place

CPU = torch.device("cpu")


class ModelPlacement:
    """Places the modules of one or more models on `device`, or in CPU memory between uses when `offload`."""

    def __init__(self, device: torch.device | str, *, offload: bool = False):
        self.device = torch.device(device)
        self.offload = offload and self.device != CPU
        self._modules: list[nn.Module] = []

    def adopt(self, module: nn.Module, dtype: torch.dtype) -> nn.Module:
        """Cast `module` to `dtype` and put it where it waits: on the device, or in CPU memory when offloading."""
        self._modules.append(module)
        return place(module, CPU if self.offload else self.device, dtype)

    def use(self, *modules: nn.Module) -> None:
        """Make sure `modules` are on the device; when offloading, every other adopted module goes to the CPU first."""
        if not self.offload:
            return
        for module in self._modules:
            if not any(module is wanted for wanted in modules):
                module.to(CPU)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # hand the freed blocks back before the next stage allocates
        for module in modules:
            module.to(self.device)


def placement_for(device: torch.device, placement: ModelPlacement | None) -> ModelPlacement:
    """`placement`, checked to be for `device`; a resident one when None."""
    if placement is None:
        return ModelPlacement(device)
    if placement.device != device:
        raise ValueError(f"placement is for {placement.device}, the model for {device}.")
    return placement
