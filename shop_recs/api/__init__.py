"""The plugin's REST API (Django REST framework); mounted by ``shop_recs.urls`` under ``api/``."""
