// Azure Monitor alert rules for what the alert function cannot report itself:
//   * queues not draining: messages waiting on a queue for 30 minutes without it ever being
//     empty (Service Bus ActiveMessages, minimum > 0), which is what an app that does not
//     start, or an alert function that cannot deliver, looks like;
//   * an alert that could not be delivered: dead letters of the other queues are forwarded to
//     `alerts`, so DeadletteredMessages > 0 means the `alerts` queue's own (terminal) dead
//     letters, i.e. the webhook refused or failed five times;
//   * a function execution that failed, or an exception logged (Application Insights).
// They notify the action group, which mails alertEmail when one is given.

@description('Service Bus namespace of the pipeline queues.')
param serviceBusNamespaceName string

@description('Application Insights component the Function App reports to.')
param appInsightsName string

@description('Azure region of the log alert (metric alerts are global).')
param location string

@description('Who to mail when a rule fires. Empty: the rules fire into the portal only.')
param alertEmail string = ''

param namePrefix string

param tags object = {}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: '${namePrefix}-ops'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'cact-ops'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = empty(alertEmail) ? [] : [
  {
    actionGroupId: actionGroup.id
  }
]

resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'An alert could not be delivered: it is dead-lettered on the alerts queue (docs/runbook.md, "Alerts not arriving").'
    severity: 1
    enabled: true
    scopes: [
      serviceBus.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-lettered'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
        }
      ]
    }
    actions: actions
  }
}

resource queuesNotDraining 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-queues-not-draining'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages have waited on a queue for 30 minutes: the app is not running or not keeping up.'
    severity: 1
    enabled: true
    scopes: [
      serviceBus.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT30M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'never-empty'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'ActiveMessages'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Minimum'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
        }
      ]
    }
    actions: actions
  }
}

resource functionFailures 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-function-failures'
  location: location
  tags: tags
  properties: {
    description: 'A function execution failed or logged an exception (docs/runbook.md).'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'union requests, exceptions | where itemType == "exception" or success == false'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [for action in actions: action.actionGroupId]
    }
  }
}
