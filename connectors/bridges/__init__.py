"""Bridges that carry reports from other systems into the intake: MQTT, Kafka, file replay."""
