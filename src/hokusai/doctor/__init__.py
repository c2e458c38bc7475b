"""``hokusai doctor``: find the hop where a request dies, and say how to fix it."""
