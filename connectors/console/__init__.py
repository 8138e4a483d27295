"""The command-centre console: a web app for command centres and departments (docs in README)."""
