"""gim: an instant-messaging server in three processes (connect, logic, business)."""
