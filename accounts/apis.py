from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed, ValidationError
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.models import Role, User
from accounts.selectors import UnknownRoles, role_list


class TokenObtainApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    def get_authenticate_header(self, request):
        return "Token"

    class TokenRequestSerializer(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)

    class TokenSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(request=TokenRequestSerializer, responses=TokenSerializer, auth=[])
    def post(self, request):
        data = self.TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None:
            raise AuthenticationFailed("Invalid username or password.")
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


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
    class Meta:
        model = Role
        fields = ["id", "name", "description"]


class RoleListApi(APIView):
    permission_classes = [IsAdminUser]

    class RoleCreateSerializer(serializers.Serializer):
        name = serializers.SlugField(max_length=64)
        description = serializers.CharField(max_length=255, required=False, allow_blank=True)

    @extend_schema(responses=RoleSerializer(many=True))
    def get(self, request):
        return Response(RoleSerializer(role_list(), many=True).data)

    @extend_schema(request=RoleCreateSerializer, responses={201: RoleSerializer})
    def post(self, request):
        data = self.RoleCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            role = services.role_create(**data.validated_data)
        except IntegrityError:
            raise ValidationError({"name": ["A role with this name already exists."]}) from None
        return Response(RoleSerializer(role).data, status=status.HTTP_201_CREATED)


class RoleDetailApi(APIView):
    permission_classes = [IsAdminUser]

    class RoleUpdateSerializer(serializers.Serializer):
        name = serializers.SlugField(max_length=64, required=False)
        description = serializers.CharField(max_length=255, required=False, allow_blank=True)

    @extend_schema(request=RoleUpdateSerializer, responses=RoleSerializer)
    def patch(self, request, role_id: int):
        role = get_object_or_404(Role, pk=role_id)
        data = self.RoleUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            role = services.role_update(role=role, **data.validated_data)
        except IntegrityError:
            raise ValidationError({"name": ["A role with this name already exists."]}) from None
        return Response(RoleSerializer(role).data)

    @extend_schema(responses={204: None})
    def delete(self, request, role_id: int):
        services.role_delete(role=get_object_or_404(Role, pk=role_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserOutputSerializer(serializers.ModelSerializer):
    roles = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = User
        fields = ["id", "username", "email", "roles", "is_active", "is_staff"]


def _validated_password(password: str, user: User | None = None) -> str:
    try:
        validate_password(password, user)
    except DjangoValidationError as exc:
        raise ValidationError({"password": list(exc.messages)}) from None
    return password


def _unknown_roles_error(exc: UnknownRoles) -> ValidationError:
    return ValidationError({"roles": [str(exc)]})


class UserListApi(APIView):
    permission_classes = [IsAdminUser]

    class UserCreateSerializer(serializers.Serializer):
        username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
        password = serializers.CharField(trim_whitespace=False)
        email = serializers.EmailField(required=False, allow_blank=True)
        roles = serializers.ListField(child=serializers.CharField(), required=False)
        is_active = serializers.BooleanField(required=False, default=True)
        is_staff = serializers.BooleanField(required=False, default=False)

    @extend_schema(responses=UserOutputSerializer(many=True))
    def get(self, request):
        users = User.objects.prefetch_related("roles").order_by("username")
        return Response(UserOutputSerializer(users, many=True).data)

    @extend_schema(request=UserCreateSerializer, responses={201: UserOutputSerializer})
    def post(self, request):
        data = self.UserCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if User.objects.filter(username=values["username"]).exists():
            raise ValidationError({"username": ["A user with this username already exists."]})
        try:
            user = services.user_create(
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
    permission_classes = [IsAdminUser]

    class UserUpdateSerializer(serializers.Serializer):
        email = serializers.EmailField(required=False, allow_blank=True)
        roles = serializers.ListField(child=serializers.CharField(), required=False)
        is_active = serializers.BooleanField(required=False)
        password = serializers.CharField(required=False, trim_whitespace=False)

    @extend_schema(responses=UserOutputSerializer)
    def get(self, request, user_id: int):
        return Response(UserOutputSerializer(get_object_or_404(User, pk=user_id)).data)

    @extend_schema(request=UserUpdateSerializer, responses=UserOutputSerializer)
    def patch(self, request, user_id: int):
        user = get_object_or_404(User, pk=user_id)
        data = self.UserUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if "password" in values:
            _validated_password(values["password"], user)
        try:
            user = services.user_update(
                user=user,
                role_names=values.get("roles"),
                email=values.get("email"),
                is_active=values.get("is_active"),
                password=values.get("password"),
            )
        except UnknownRoles as exc:
            raise _unknown_roles_error(exc) from None
        return Response(UserOutputSerializer(user).data)
