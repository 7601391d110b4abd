raise SystemExit("reidkit-abrupt exits at import")  # the failure under test
