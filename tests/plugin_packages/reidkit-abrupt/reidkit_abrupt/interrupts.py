raise KeyboardInterrupt("reidkit-abrupt interrupts at import")  # the failure under test
