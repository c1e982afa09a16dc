"""URLs of the test Django project (see django_site): admin, LoginView, DRF (Basic, token and
JWT logins), a signup form."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView


class WhoAmI(APIView):
    """A DRF endpoint behind BasicAuthentication and IsAuthenticated."""

    def get(self, request: Request) -> Response:
        return Response({"username": request.user.get_username()})


def signup(request: HttpRequest) -> HttpResponse:
    """Create an account with Django's own UserCreationForm."""
    form = UserCreationForm(request.POST)
    if form.is_valid():
        form.save()
        return HttpResponse("created", status=201)
    return HttpResponse(form.errors.as_json(), status=400)


def _urls() -> list[Any]:
    return [
        path("admin/", admin.site.urls),
        path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
        path("signup/", signup),
        path("api/whoami/", WhoAmI.as_view()),
        path("api/token/", obtain_auth_token),
        path("api/jwt/", TokenObtainPairView.as_view()),
    ]


urlpatterns = _urls()
