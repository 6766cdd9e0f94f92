"""The mechanisms every command shares: the step runner (install, seal) and the check runner (doctor)."""
