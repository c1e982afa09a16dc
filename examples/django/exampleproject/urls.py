"""Routes: /admin/, /accounts/login/ (LoginView), /login/ (a hand-written view), /signup/
(UserCreationForm), /api/whoami/ (DRF, HTTP Basic or session)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import authenticate, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class WhoAmI(APIView):
    """Who the request is authenticated as (HTTP Basic or the session)."""

    def get(self, request: Request) -> Response:
        return Response({"username": request.user.get_username()})


# csrf_exempt only so the README's curl commands work without a CSRF dance; keep CSRF
# protection on in a real application.
@csrf_exempt
def signup(request: HttpRequest) -> HttpResponse:
    """Create an account with Django's own form: usermon reports it as a signup."""
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        return HttpResponse("account created\n", status=201)
    return HttpResponse(form.errors.as_json() + "\n", status=400)


@csrf_exempt
def login_view(request: HttpRequest) -> HttpResponse:
    """The hand-written login most applications have: authenticate(), then login()."""
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return HttpResponse("invalid credentials\n", status=401)
    login(request, user)
    return HttpResponse(f"welcome {user.get_username()}\n")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("login/", login_view),
    path("signup/", signup),
    path("api/whoami/", WhoAmI.as_view()),
]
