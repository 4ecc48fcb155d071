"""Pure Python core: events, rooms, routing. Imports no aiohttp, socketio or asyncpg."""
