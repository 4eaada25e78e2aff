"""EditMGT Studio web app (placeholder until the UI lands)."""

if __name__ == "__main__":
    raise SystemExit("The EditMGT Studio UI is not built yet; see README.md.")
