"""The web page: the built front end (``static/``, made from ``web/`` by ``make web``)."""
