"""Inference for the Paints-UNDO model family.

Deliberately empty of imports: submodules are imported where used, so light
modules of this package never pull in torch.
"""
