"""The application layer: admin operations every front-end (HTTP API, CLI, console) calls.

Each service operation takes an :class:`~hokusai.admin.actor.Actor`, asks the one
authorizer (:mod:`hokusai.authorization`), validates its input, changes the store
and writes the audit row in one transaction (:mod:`hokusai.admin.transaction`), returns
typed records and raises only :mod:`hokusai.errors`.
"""
