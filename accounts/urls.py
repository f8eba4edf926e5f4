from django.urls import path

from accounts import apis

urlpatterns = [
    path("auth/token/", apis.TokenObtainApi.as_view(), name="auth-token"),
    path("auth/tokens/", apis.TokenListApi.as_view(), name="auth-token-list"),
    path("auth/tokens/<int:token_id>/", apis.TokenDetailApi.as_view(), name="auth-token-detail"),
    path("me/", apis.MeApi.as_view(), name="me"),
    path("roles/", apis.RoleListApi.as_view(), name="role-list"),
    path("roles/<int:role_id>/", apis.RoleDetailApi.as_view(), name="role-detail"),
    path("users/", apis.UserListApi.as_view(), name="user-list"),
    path("users/<int:user_id>/", apis.UserDetailApi.as_view(), name="user-detail"),
]
