"""Endpoints for chat platforms. No session and no CSRF token: the signature is the
authentication, checked on the raw body before anything is parsed. Each answers at once
(Slack waits 3 seconds); answers are written by tasks."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from integrations import services, tasks
from integrations.models import Question, Workspace
from integrations.slack import blocks
from integrations.verification import SignatureRejected, verify_slack_request

logger = logging.getLogger(__name__)


def _error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def _slack_refusal(team_id: str, app_id) -> JsonResponse | None:
    """The allow-lists (SLACK_ALLOWED_TEAM_IDS, SLACK_ALLOWED_APP_IDS), when set."""
    team_id, app_id = str(team_id or ""), str(app_id or "")
    allowed_teams, allowed_apps = settings.SLACK_ALLOWED_TEAM_IDS, settings.SLACK_ALLOWED_APP_IDS
    if allowed_teams and team_id not in allowed_teams:
        logger.warning("slack: a request from a workspace not allowed (%s)", team_id[:32])
        return _error(403, "This Slack workspace is not allowed.")
    if allowed_apps and app_id not in allowed_apps:
        logger.warning("slack: a request for an app not allowed (%s)", app_id[:32])
        return _error(403, "This Slack app is not allowed.")
    return None


def _verified(request) -> JsonResponse | None:
    if not settings.SLACK_SIGNING_SECRETS:
        return _error(503, "Slack is not configured: set SLACK_SIGNING_SECRET.")
    try:
        verify_slack_request(body=request.body, headers=request.headers)
    except SignatureRejected as exc:
        logger.warning("slack: request refused: %s", exc)
        return _error(401, "The request signature is missing, stale or wrong.")
    return None


def _slack_workspace(team_id: str) -> Workspace | None:
    workspace = services.workspace_for(platform=Workspace.Platform.SLACK, external_id=team_id)
    return workspace if workspace.enabled else None


@csrf_exempt
@require_POST
def slack_command(request):
    if refused := _verified(request):
        return refused
    form = QueryDict(request.body)
    if form.get("ssl_check") == "1":
        return HttpResponse(status=200)
    team_id, user_id = form.get("team_id", ""), form.get("user_id", "")
    if refused := _slack_refusal(team_id, form.get("api_app_id")):
        return refused
    if not team_id or not user_id or not form.get("response_url"):
        return _error(400, "A slash command needs team_id, user_id and response_url.")
    workspace = _slack_workspace(team_id)
    if workspace is None:
        return _ephemeral("This workspace is switched off in the chatbot's console.")
    text = services.question_text(form.get("text", ""))
    if not text:
        return _ephemeral(services.USAGE)
    channel_id = form.get("channel_id", "")
    services.question_receive(
        workspace=workspace,
        kind=Question.Kind.COMMAND,
        external_user_id=user_id,
        channel_id=channel_id,
        channel_type="im"
        if form.get("channel_name") == "directmessage" or channel_id.startswith("D")
        else "channel",
        event_id=form.get("trigger_id", "")[:64],
        text=text,
        response_url=form.get("response_url", ""),
    )
    return _ephemeral(services.WORKING_ON_IT)


@csrf_exempt
@require_POST
def slack_event(request):
    if refused := _verified(request):
        return refused
    try:
        payload = json.loads(request.body)
    except ValueError:
        return _error(400, "The body is not JSON.")
    if not isinstance(payload, dict):
        return _error(400, "The body is not a JSON object.")
    if payload.get("type") == "url_verification":
        return JsonResponse({"challenge": str(payload.get("challenge", ""))})
    if payload.get("type") != "event_callback" or not isinstance(payload.get("event"), dict):
        return HttpResponse(status=200)
    team_id = str(payload.get("team_id", ""))
    if refused := _slack_refusal(team_id, payload.get("api_app_id")):
        return refused
    if request.headers.get("X-Slack-Retry-Num"):
        logger.info(
            "slack: retry %s of an event (%s)",
            request.headers.get("X-Slack-Retry-Num", "")[:4],
            request.headers.get("X-Slack-Retry-Reason", "")[:40],
        )
    bots = {
        str(a.get("user_id"))
        for a in payload.get("authorizations") or []
        if isinstance(a, dict) and a.get("is_bot")
    }
    fields = services.slack_event_question_fields(
        payload["event"], event_id=str(payload.get("event_id", ""))[:64], bot_user_ids=bots
    )
    workspace = _slack_workspace(team_id) if fields and team_id else None
    if workspace is not None:
        services.question_receive(workspace=workspace, **fields)
    return HttpResponse(status=200)


@csrf_exempt
@require_POST
def slack_interaction(request):
    if refused := _verified(request):
        return refused
    try:
        payload = json.loads(QueryDict(request.body).get("payload") or "")
    except ValueError:
        return _error(400, "The payload field is not JSON.")
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return HttpResponse(status=200)
    team_id = str((payload.get("team") or {}).get("id", ""))
    if refused := _slack_refusal(team_id, payload.get("api_app_id")):
        return refused
    workspace = _slack_workspace(team_id) if team_id else None
    user_id = str((payload.get("user") or {}).get("id", ""))
    if workspace is None or not user_id:
        return HttpResponse(status=200)
    for action in payload.get("actions") or []:
        if not isinstance(action, dict):
            continue
        action_id, value = str(action.get("action_id", "")), str(action.get("value", ""))
        if action_id.startswith(blocks.FEEDBACK_ACTION):
            try:
                services.feedback_from_button(
                    workspace=workspace, external_user_id=user_id, action_id=action_id, value=value
                )
            except (services.NotLinked, Http404):
                return _ephemeral("Only the person who asked can rate this answer.")
        elif action_id == blocks.SHARE_ACTION and value.isdigit():
            tasks.share_answer.delay(
                workspace.pk,
                user_id,
                int(value),
                str((payload.get("channel") or {}).get("id", "")),
                str(payload.get("response_url", "")),
            )
    return HttpResponse(status=200)


def _ephemeral(text: str) -> JsonResponse:
    return JsonResponse({"response_type": "ephemeral", "text": text})


@login_required
@require_http_methods(["GET", "POST"])
def link_account(request, key: str):
    """Bind the platform user the link was made for to the logged-in user (one time)."""
    token = services.link_token_lookup(key=key)
    if request.method == "POST":
        identity = services.link_token_redeem(key=key, user=request.user)
        return render(request, "integrations/linked.html", {"identity": identity})
    return render(request, "integrations/link.html", {"token": token})
