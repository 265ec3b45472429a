"""Crypto: AEAD for repository objects, the master key, key slots and key providers."""
