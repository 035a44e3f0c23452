"""Provisioning errors: each names the offending value and how to fix it."""

from __future__ import annotations

from hearmylove.errors import HearMyLoveError


class ProvisionError(HearMyLoveError):
    """Root of the provisioning errors."""


class IdentityError(ProvisionError, ValueError):
    """An identity file that is missing, not TOML, or has a key with a bad value."""


class ToolError(ProvisionError, RuntimeError):
    """A host tool (mmdebstrap, mtools, sfdisk, qemu, ...) is missing or failed."""


class UnsafeTargetError(ProvisionError, PermissionError):
    """A flash target that must not be written: the system disk, a mounted disk, a fixed disk."""


class VerifyError(ProvisionError, OSError):
    """What was read back from the card differs from what was written."""


class BootTestError(ProvisionError, RuntimeError):
    """The image did not boot, or its daemon did not come online, under qemu."""
