"""The service layer: one module per resource, the rules and the transactions.

The two doors, the JSON API (``conveyor.api``) and the web pages
(``conveyor.web``), call these functions and nothing below them; neither door
imports the other. The services call the pure rules (``conveyor.domain``,
``conveyor.analysis``), the repositories (``conveyor.store``, where every query
lives) and the background machinery (``conveyor.deploy``, ``conveyor.build``).

``state`` (the process-wide ``ControlPlane``), ``auth`` (principals, sessions'
CSRF), ``schemas`` (the API's bodies, which the services return), and one
module per resource: ``apps``, ``builds``, ``deployments``, ``hosts``
(agents, routers, the data-plane documents), ``logs``, ``metrics`` (series,
DORA, the control plane's own numbers), ``audit``, ``domains`` (domains and
their certificates, keys sealed) and ``acme`` (the certificate loop);
``views`` composes them into what each page and its JSON twin show.
"""
