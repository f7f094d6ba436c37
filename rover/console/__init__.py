"""The robot's web console: both eyes, the traversability overlay, a HUD and the controls, for a
laptop or a phone (aiohttp server, static page, one WebSocket per page)."""
