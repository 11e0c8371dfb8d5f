"""gim.client: what apps, bots and our own tests use to talk to gim."""
