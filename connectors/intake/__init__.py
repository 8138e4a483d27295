"""The one entry: the HTTP intake (Open311 and the JSON API) and the publisher behind it."""
