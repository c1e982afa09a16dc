"""The Django project the instrumentation tests run against, configured once per process.

Django can be configured only once per process, so every Django test shares this one project:
the admin, ``LoginView``, a DRF API with Basic authentication, the views that hand out DRF and
SimpleJWT tokens for a username and password, and a view that creates a user
through a form, on an in-memory SQLite database migrated once. Passwords use the MD5 hasher so
the suite is fast, wrapped to count its calls: protection tests assert that a refused login
computes no hash.
"""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings
from django.contrib.auth.hashers import MD5PasswordHasher

URLCONF = __name__.rsplit(".", 1)[0] + ".django_urls"


def setup() -> None:
    """Configure and start Django for this process (a second call does nothing)."""
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="instrumentation-tests-only-and-long-enough-for-jwt",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=URLCONF,
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "rest_framework",
            "rest_framework.authtoken",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [],
                "OPTIONS": {
                    "loaders": [
                        (
                            "django.template.loaders.locmem.Loader",
                            {"registration/login.html": "{{ form.as_p }}"},
                        ),
                        "django.template.loaders.app_directories.Loader",
                    ],
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ],
                },
            }
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        PASSWORD_HASHERS=[__name__ + ".CountingHasher"],
        AUTHENTICATION_BACKENDS=[
            "django.contrib.auth.backends.ModelBackend",
            __name__ + ".ExplodingBackend",
        ],
        LOGIN_REDIRECT_URL="/admin/",
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": [
                "rest_framework.authentication.BasicAuthentication",
            ],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
            "UNAUTHENTICATED_USER": None,
        },
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


class CountingHasher(MD5PasswordHasher):
    """Django's MD5 hasher, counting every hash it computes or verifies."""

    calls = 0

    def encode(self, password: str, salt: str) -> str:
        CountingHasher.calls += 1
        return super().encode(password, salt)


class DatabaseDown(Exception):
    """The application's own failure, raised by :class:`ExplodingBackend`."""


class ExplodingBackend:
    """An authentication backend that fails the way a real one can (its database is down).

    It only reacts to the username ``explode``, so every other login goes through ModelBackend.
    """

    def authenticate(self, request: Any, username: str | None = None, **kwargs: Any) -> Any:
        if username == "explode":
            raise DatabaseDown("the user database is unreachable")
        return None

    def get_user(self, user_id: int) -> Any:
        return None


def make_user(username: str, password: str, **extra: Any) -> Any:
    """Create a Django user through the ORM (a signup, if the instrumentor is on)."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username=username, password=password, **extra)
