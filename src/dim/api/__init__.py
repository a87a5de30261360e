"""``dim api``: the REST API (``/api/v1``), for the dashboard, for scripts and for other programs.

It sits where the command line sits: it parses a request, calls the same function of
:mod:`dim.actions` that the CLI calls, and answers JSON. Nothing imports it but the CLI's
``dim api`` command and the tests.

:mod:`dim.api.tokens`     bearer tokens, roles reader and admin, hashes in a 0600 file
:mod:`dim.api.routes`     the table of routes: method, path, role, parameters, handler
:mod:`dim.api.resources`  the handlers: plain functions of a Context and the request's values
:mod:`dim.api.openapi`    the OpenAPI document, made from the route table
:mod:`dim.api.app`        the aiohttp application: authentication, errors, running it
"""
