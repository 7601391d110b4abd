"""Where plugins written before reidkit.devices import the device resolver from (the same functions)."""
from reidkit.devices import check_device, torch_device, torch_dtype

__all__ = ["check_device", "torch_device", "torch_dtype"]
