"""The command-centre console's decisions, pure: who may see and do what (``access``), the
view built from the topics (``view``), and the records each action publishes (``actions``).

The web server in ``connectors/console`` only moves data between these and Kafka/HTTP.
"""
