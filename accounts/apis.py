from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import (
    APIException,
    AuthenticationFailed,
    NotFound,
    ValidationError,
)
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import policy, services
from accounts.models import ApiToken, Role, User
from accounts.policy import ManagementDenied, actor_for
from accounts.selectors import UnknownRoles, role_list, roles_by_names, users_by_usernames
from accounts.tokens import token_issue, token_revoke, tokens_for_user
from config.serializers import StrictSerializer


class TokenObtainApi(APIView):
    """A new API token for a username and password. Failed attempts are counted per account
    and per address (accounts.login_throttle), and over the limit answer 429."""

    permission_classes = [AllowAny]
    authentication_classes = []

    def get_authenticate_header(self, request):
        return "Token"

    class TokenRequestSerializer(StrictSerializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(
            max_length=4096, style={"input_type": "password"}, trim_whitespace=False
        )
        name = serializers.CharField(
            max_length=100, required=False, allow_blank=True, help_text="a label, e.g. a host"
        )

    class TokenSerializer(serializers.Serializer):
        token = serializers.CharField(help_text="shown once; only a hash is stored")
        id = serializers.IntegerField()
        expires_at = serializers.DateTimeField()

    @extend_schema(
        request=TokenRequestSerializer,
        responses={
            200: TokenSerializer,
            429: OpenApiResponse(description="too many failed sign-ins"),
            503: OpenApiResponse(description="sign-in cannot be checked now (fails closed)"),
        },
        auth=[],
    )
    def post(self, request):
        data = self.TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = authenticate(request, username=values["username"], password=values["password"])
        if user is None:
            raise AuthenticationFailed("Invalid username or password.")
        token, key = token_issue(user=user, name=values.get("name", ""))
        return Response({"token": key, "id": token.pk, "expires_at": token.expires_at})


class ApiTokenSerializer(serializers.ModelSerializer):
    current = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "expires_at", "last_used_at", "current"]

    def get_current(self, token) -> bool:
        return token == self.context.get("current")


class TokenListApi(APIView):
    @extend_schema(
        responses=ApiTokenSerializer(many=True),
        description="Your own live API tokens (never their keys).",
    )
    def get(self, request):
        tokens = tokens_for_user(user=request.user)
        context = {"current": request.auth if isinstance(request.auth, ApiToken) else None}
        return Response(ApiTokenSerializer(tokens, many=True, context=context).data)


class TokenDetailApi(APIView):
    @extend_schema(responses={204: None}, description="Revoke one of your own API tokens.")
    def delete(self, request, token_id: int):
        if not token_revoke(user=request.user, token_id=token_id):
            raise NotFound("You have no token with this id.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    class MeSerializer(serializers.Serializer):
        username = serializers.CharField()
        roles = serializers.SerializerMethodField()
        is_staff = serializers.BooleanField()

        def get_roles(self, user) -> list[str]:
            return sorted(r.name for r in user.roles.all())

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        return Response(self.MeSerializer(request.user).data)


class RoleSerializer(serializers.ModelSerializer):
    managers = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)

    class Meta:
        model = Role
        fields = ["id", "name", "description", "managers"]


def _actor_who(request, allowed, message: str):
    """The request's Actor, or a 403 when ``allowed(actor)`` is false (checked before the
    body is parsed)."""
    actor = actor_for(user=request.user)
    if not allowed(actor):
        raise ManagementDenied(message)
    return actor


TAKEN_NAME = "the name is taken"
PASSWORD_AND_ROLES_RULES = (
    "The password must pass the password rules (at least 8 characters, not a common "
    "password, not all digits, not like the username) and every role must exist: 400 "
    "otherwise, naming the field."
)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT


class RoleListApi(APIView):
    class RoleCreateSerializer(StrictSerializer):
        name = serializers.SlugField(max_length=64)
        description = serializers.CharField(max_length=255, required=False, allow_blank=True)

    @extend_schema(responses=RoleSerializer(many=True))
    def get(self, request):
        _actor_who(request, policy.can_list_roles, "You do not manage users or documents.")
        return Response(RoleSerializer(role_list().prefetch_related("managers"), many=True).data)

    @extend_schema(
        request=RoleCreateSerializer,
        responses={201: RoleSerializer, 409: OpenApiResponse(description=TAKEN_NAME)},
    )
    def post(self, request):
        actor = _actor_who(request, policy.can_manage_roles, "Only a superuser can create roles.")
        data = self.RoleCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            role = services.role_create(actor=actor, **data.validated_data)
        except IntegrityError:
            raise Conflict("A role with this name already exists.") from None
        return Response(RoleSerializer(role).data, status=status.HTTP_201_CREATED)


class RoleDetailApi(APIView):
    class RoleUpdateSerializer(StrictSerializer):
        name = serializers.SlugField(max_length=64, required=False)
        description = serializers.CharField(max_length=255, required=False, allow_blank=True)
        managers = serializers.ListField(
            child=serializers.CharField(), required=False, help_text="usernames"
        )

    @extend_schema(
        request=RoleUpdateSerializer,
        responses={200: RoleSerializer, 409: OpenApiResponse(description=TAKEN_NAME)},
        description="Every manager must name an existing user (400 otherwise).",
    )
    def patch(self, request, role_id: int):
        actor = _actor_who(request, policy.can_manage_roles, "Only a superuser can change roles.")
        role = get_object_or_404(Role, pk=role_id)
        data = self.RoleUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        managers = None
        if "managers" in values:
            try:
                managers = users_by_usernames(usernames=values["managers"])
            except LookupError as exc:
                raise ValidationError({"managers": [str(exc)]}) from None
        try:
            with transaction.atomic():
                role = services.role_update(
                    actor=actor,
                    role=role,
                    name=values.get("name"),
                    description=values.get("description"),
                )
                if managers is not None:
                    services.role_set_managers(actor=actor, role=role, managers=managers)
        except IntegrityError:
            raise Conflict("A role with this name already exists.") from None
        return Response(RoleSerializer(role).data)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "move_to", str, description="the role that takes over this role's documents"
            )
        ],
        responses={
            204: None,
            409: OpenApiResponse(description="documents would lose their only role"),
        },
    )
    def delete(self, request, role_id: int):
        actor = _actor_who(request, policy.can_manage_roles, "Only a superuser can delete roles.")
        role = get_object_or_404(Role, pk=role_id)
        move_to = None
        if request.query_params.get("move_to"):
            try:
                [move_to] = roles_by_names(names=[request.query_params["move_to"]])
            except UnknownRoles as exc:
                raise ValidationError({"move_to": [str(exc)]}) from None
            if move_to.pk == role.pk:
                raise ValidationError({"move_to": ["A role cannot move its documents to itself."]})
        try:
            services.role_delete(actor=actor, role=role, move_to=move_to)
        except services.RoleInUse as exc:
            raise Conflict(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserOutputSerializer(serializers.ModelSerializer):
    roles = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    managed_roles = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "roles",
            "managed_roles",
            "is_active",
            "is_staff",
            "is_superuser",
        ]


def _validated_password(password: str, user: User | None = None) -> str:
    try:
        validate_password(password, user)
    except DjangoValidationError as exc:
        raise ValidationError({"password": list(exc.messages)}) from None
    return password


def _unknown_roles_error(exc: UnknownRoles) -> ValidationError:
    return ValidationError({"roles": [str(exc)]})


def _manages_users(actor) -> bool:
    return actor.manages_users


class UserListApi(APIView):
    class UserCreateSerializer(StrictSerializer):
        username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
        password = serializers.CharField(min_length=8, max_length=4096, trim_whitespace=False)
        email = serializers.EmailField(required=False, allow_blank=True)
        roles = serializers.ListField(child=serializers.CharField(), required=False)
        is_active = serializers.BooleanField(required=False, default=True)
        is_staff = serializers.BooleanField(required=False, default=False)

    @extend_schema(responses=UserOutputSerializer(many=True))
    def get(self, request):
        _actor_who(request, _manages_users, "You do not manage users.")
        users = User.objects.prefetch_related("roles", "managed_roles").order_by("username")
        return Response(UserOutputSerializer(users, many=True).data)

    @extend_schema(
        request=UserCreateSerializer,
        responses={201: UserOutputSerializer, 409: OpenApiResponse(description=TAKEN_NAME)},
        description=PASSWORD_AND_ROLES_RULES,
    )
    def post(self, request):
        actor = _actor_who(request, _manages_users, "You do not manage users.")
        data = self.UserCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        policy.check_create_user(actor, is_staff=values["is_staff"])
        if User.objects.filter(username=values["username"]).exists():
            raise Conflict("A user with this username already exists.")
        try:
            user = services.user_create(
                actor=actor,
                username=values["username"],
                password=_validated_password(values["password"]),
                email=values.get("email", ""),
                role_names=values.get("roles", []),
                is_active=values["is_active"],
                is_staff=values["is_staff"],
            )
        except UnknownRoles as exc:
            raise _unknown_roles_error(exc) from None
        return Response(UserOutputSerializer(user).data, status=status.HTTP_201_CREATED)


class UserDetailApi(APIView):
    class UserUpdateSerializer(StrictSerializer):
        email = serializers.EmailField(required=False, allow_blank=True)
        roles = serializers.ListField(child=serializers.CharField(), required=False)
        is_active = serializers.BooleanField(required=False)
        is_staff = serializers.BooleanField(required=False)
        password = serializers.CharField(
            required=False, min_length=8, max_length=4096, trim_whitespace=False
        )

    @extend_schema(responses=UserOutputSerializer)
    def get(self, request, user_id: int):
        _actor_who(request, _manages_users, "You do not manage users.")
        return Response(UserOutputSerializer(get_object_or_404(User, pk=user_id)).data)

    @extend_schema(
        request=UserUpdateSerializer,
        responses=UserOutputSerializer,
        description="A new password or a deactivation revokes the user's API tokens. "
        + PASSWORD_AND_ROLES_RULES,
    )
    def patch(self, request, user_id: int):
        actor = _actor_who(request, _manages_users, "You do not manage users.")
        user = get_object_or_404(User, pk=user_id)
        data = self.UserUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        policy.check_manage_user(actor, user)
        if "password" in values:
            policy.check_set_password(actor, user)
            _validated_password(values["password"], user)
        try:
            user = services.user_update(
                actor=actor,
                user=user,
                role_names=values.get("roles"),
                email=values.get("email"),
                is_active=values.get("is_active"),
                is_staff=values.get("is_staff"),
                password=values.get("password"),
            )
        except UnknownRoles as exc:
            raise _unknown_roles_error(exc) from None
        return Response(UserOutputSerializer(user).data)
