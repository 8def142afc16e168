package main

import (
	"context"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	prgatev1 "github.com/prgate/prgate/gen/go/prgate/v1"
)

// refusedTokenReason is the field violation reason of a consistency token the gateway did not
// issue (another deployment's, or signed with a secret since changed).
const refusedTokenReason = "INVALID_CONSISTENCY_TOKEN"

// behindReason is the ErrorInfo reason of a call whose token's version the gateway's read
// model did not reach before the deadline.
const behindReason = "READ_MODEL_BEHIND"

// session gives read-your-writes across gateways, as the Python client's Session does: its
// interceptors keep the consistency token of every answer (the newest per pull request, judged
// by the version the answer shows) and put it on the next call about that pull request
// (options.consistency_token of a command, consistency_token of Get and Watch; ListPullRequests
// gets the newest of all). The gateway serving that call waits until its read model has the
// version the token names. Install it on every connection of one client:
//
//	grpc.WithChainUnaryInterceptor(s.unary), grpc.WithChainStreamInterceptor(s.stream)
//
// Requests are cloned before a token is added; the caller's messages are never changed.
type session struct {
	mu     sync.Mutex
	tokens map[string]versionedToken
	latest string
}

type versionedToken struct {
	version int64
	token   string
}

func newSession() *session {
	return &session{tokens: map[string]versionedToken{}}
}

func (s *session) token(pullRequestID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[pullRequestID].token
}

// remember keeps token unless one for a higher version is known (version 0: not shown, as on
// an ACCEPTED receipt, kept only when nothing is known).
func (s *session) remember(pullRequestID string, version int64, token string) {
	if pullRequestID == "" || token == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if known, ok := s.tokens[pullRequestID]; ok && (version < known.version || (version == 0 && known.version > 0)) {
		return
	}
	s.tokens[pullRequestID] = versionedToken{version, token}
	s.latest = token
}

func (s *session) forget(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, known := range s.tokens {
		if known.token == token {
			delete(s.tokens, id)
		}
	}
	if s.latest == token {
		s.latest = ""
	}
}

// stamped returns a copy of req carrying the session's token, and the token ("" when none
// applies: then req itself is returned).
func (s *session) stamped(req any) (any, string) {
	switch r := req.(type) {
	case *prgatev1.GetPullRequestRequest:
		if t := s.token(r.GetPullRequestId()); t != "" && r.GetConsistencyToken() == "" {
			c := proto.Clone(r).(*prgatev1.GetPullRequestRequest)
			c.ConsistencyToken = t
			return c, t
		}
	case *prgatev1.WatchPullRequestRequest:
		if t := s.token(r.GetPullRequestId()); t != "" && r.GetConsistencyToken() == "" {
			c := proto.Clone(r).(*prgatev1.WatchPullRequestRequest)
			c.ConsistencyToken = t
			return c, t
		}
	case *prgatev1.ListPullRequestsRequest:
		s.mu.Lock()
		t := s.latest
		s.mu.Unlock()
		if t != "" && r.GetConsistencyToken() == "" {
			c := proto.Clone(r).(*prgatev1.ListPullRequestsRequest)
			c.ConsistencyToken = t
			return c, t
		}
	case proto.Message:
		// A command request: its command's pull_request_id (OpenPullRequest has none).
		msg := r.ProtoReflect()
		fields := msg.Descriptor().Fields()
		command, options := fields.ByName("command"), fields.ByName("options")
		if command == nil || options == nil || command.Message() == nil {
			break
		}
		idField := command.Message().Fields().ByName("pull_request_id")
		if idField == nil {
			break
		}
		t := s.token(msg.Get(command).Message().Get(idField).String())
		if t == "" {
			break
		}
		c := proto.Clone(r)
		opts := c.ProtoReflect().Mutable(options).Message().Interface().(*prgatev1.CommandOptions)
		if opts.GetConsistencyToken() != "" {
			break
		}
		opts.ConsistencyToken = t
		return c, t
	}
	return req, ""
}

// take remembers the token of a response or streamed item.
func (s *session) take(resp any) {
	switch r := resp.(type) {
	case interface {
		GetReceipt() *prgatev1.CommandReceipt
	}:
		receipt := r.GetReceipt()
		s.remember(receipt.GetPullRequestId(), receipt.GetResult().GetVersion(), receipt.GetConsistencyToken())
	case interface {
		GetPullRequest() *prgatev1.PullRequest
		GetConsistencyToken() string
	}:
		pr := r.GetPullRequest()
		s.remember(pr.GetPullRequestId(), pr.GetVersion(), r.GetConsistencyToken())
	}
}

// tokenRefused reports whether err is the gateway refusing a consistency token.
func tokenRefused(err error) bool {
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		return false
	}
	for _, detail := range st.Details() {
		if bad, ok := detail.(*errdetails.BadRequest); ok {
			for _, v := range bad.GetFieldViolations() {
				if v.GetReason() == refusedTokenReason {
					return true
				}
			}
		}
	}
	return false
}

// readModelBehind reports whether err is the gateway's READ_MODEL_BEHIND: its read model did
// not reach the token's version before the call's deadline.
func readModelBehind(err error) bool {
	for _, detail := range status.Convert(err).Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok && info.GetReason() == behindReason {
			return true
		}
	}
	return false
}

// unary is the grpc.UnaryClientInterceptor: stamp, call, take; a refused token is forgotten
// and the call made once more without it. A token the read model did not reach (after the
// channel's own retries) is forgotten too, so later calls do not wait it out again (a cluster
// recreated under the same topic names reads old tokens but never reaches their versions).
func (s *session) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	sent, token := s.stamped(req)
	err := invoker(ctx, method, sent, reply, cc, opts...)
	if err != nil && token != "" && tokenRefused(err) {
		s.forget(token)
		err = invoker(ctx, method, req, reply, cc, opts...)
	} else if err != nil && token != "" && readModelBehind(err) {
		s.forget(token)
	}
	if err == nil {
		if m, ok := reply.(protoreflect.ProtoMessage); ok {
			s.take(m)
		}
	}
	return err
}

// stream is the grpc.StreamClientInterceptor (WatchCommand, WatchPullRequest). A stream
// cannot be made again transparently (its request is sent), so a refused token ends it with
// the gateway's INVALID_ARGUMENT as before, but is forgotten: the caller's next watch goes
// without it instead of being refused again and again.
func (s *session) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	inner, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &sessionStream{ClientStream: inner, session: s}, nil
}

type sessionStream struct {
	grpc.ClientStream
	session *session
	token   string // the session's token sent with the request ("" when none)
}

func (w *sessionStream) SendMsg(m any) error {
	sent, token := w.session.stamped(m)
	if token != "" {
		w.token = token
	}
	return w.ClientStream.SendMsg(sent)
}

func (w *sessionStream) RecvMsg(m any) error {
	err := w.ClientStream.RecvMsg(m)
	if err == nil {
		w.session.take(m)
	} else if w.token != "" && (tokenRefused(err) || readModelBehind(err)) {
		w.session.forget(w.token)
	}
	return err
}
